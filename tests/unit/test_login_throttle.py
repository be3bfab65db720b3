"""Login throttle building blocks: which address is throttled, and the settings' validation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sagascope.cli.main import main as cli_main
from sagascope.common.errors import ResourceExhausted
from sagascope.common.telemetry.metrics import LoginMetrics
from sagascope.identity.throttle import LoginThrottle, ThrottleSettings, client_address, grpc_peer_address


@pytest.mark.parametrize(
    ("peer", "expected"),
    [("ipv4:10.1.2.3:5000", "10.1.2.3"), ("ipv6:[::1]:5000", "::1"), ("unix:/tmp/s", "unix"), (None, None)],
)
def test_grpc_peer_address(peer: str | None, expected: str | None) -> None:
    assert grpc_peer_address(peer) == expected


def test_grpc_peer_address_reads_grpc_cores_percent_encoded_ipv6() -> None:
    # What grpc core's peer() really gives for an IPv6 client: the brackets percent-encoded.
    assert grpc_peer_address("ipv6:%5B::1%5D:5000") == "::1"
    assert grpc_peer_address("ipv6:%5B2001:db8::7%5D:443") == "2001:db8::7"


def test_forwarded_for_counts_only_from_a_trusted_proxy() -> None:
    assert client_address("10.0.0.5", "203.0.113.9", ()) == "10.0.0.5"
    assert client_address("10.0.0.5", "203.0.113.9", ("10.0.0.0/8",)) == "203.0.113.9"
    # the client may prepend anything: the last hop not a trusted proxy is the one that counts
    assert client_address("10.0.0.5", "1.1.1.1, 203.0.113.9, 10.0.0.7", ("10.0.0.0/8",)) == "203.0.113.9"
    assert client_address("10.0.0.5", "not-an-ip", ("10.0.0.0/8",)) == "10.0.0.5"
    assert client_address(None, "203.0.113.9", ("10.0.0.0/8",)) == "unknown"


@pytest.mark.parametrize(
    "settings",
    [
        ThrottleSettings(per_username="five a minute"),
        ThrottleSettings(max_concurrent_hashes=0),
        ThrottleSettings(trusted_proxies=("10.0.0.0/33",)),
    ],
)
def test_bad_settings_are_refused(settings: ThrottleSettings) -> None:
    with pytest.raises(ValueError):
        settings.validate()


async def test_retry_after_is_the_time_until_the_window_frees_a_slot() -> None:
    metrics = LoginMetrics.create(CollectorRegistry())
    throttle = LoginThrottle(ThrottleSettings(per_username="2/minute", per_address="100/minute"), metrics)
    throttle.admit("bob", "10.0.0.1")
    throttle.admit("bob", "10.0.0.1")
    with pytest.raises(ResourceExhausted) as caught:
        throttle.admit("bob", "10.0.0.1")
    assert 50 <= caught.value.retry_after_seconds <= 60
    assert dict(caught.value.extra_trailing_metadata())["retry-after"] == str(caught.value.retry_after_seconds)
    throttle.succeeded("bob")
    throttle.admit("bob", "10.0.0.1")
    assert metrics.throttled.labels("username")._value.get() == 1
    await asyncio.sleep(0)


def test_sagascope_certs_writes_a_ca_and_certificates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["certs", "--out", str(tmp_path / "certs")]) == 0
    names = sorted(p.name for p in (tmp_path / "certs").iterdir())
    made = ("ca", "identity", "order", "payment", "client")
    assert names == sorted(f"{n}.{ext}" for n in made for ext in ("crt", "key"))
    assert "ORDER_TLS_CA_FILE=" in capsys.readouterr().out
