"""Issue 10's login defects over real sockets: malformed HTTP bodies (2) and login throttling (4)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import grpc
import pytest

from sagascope.api.identity.v1 import identity_pb2, identity_pb2_grpc
from sagascope.identity.http import MAX_BODY_BYTES
from sagascope.identity.throttle import ThrottleSettings
from tests.support.identity import DEMO_PASSWORDS, IdentityHandle, running_identity
from tests.support.raw_grpc import retry_delay_seconds

JSON = {"Content-Type": "application/json"}


def _throttled_count(identity: IdentityHandle, reason: str) -> float:
    return identity.service.login_metrics.throttled.labels(reason)._value.get()


async def _grpc_login(
    identity: IdentityHandle, username: str, password: str, metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(identity.grpc_target) as channel:
        try:
            await identity_pb2_grpc.IdentityServiceStub(channel).Login(
                identity_pb2.LoginRequest(username=username, password=password), metadata=metadata, timeout=10
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"username": "alice", "password": "\\ud800"}', "password"),  # a lone surrogate
        (b"[" * 5_000 + b"]" * 5_000, "body"),  # deeper than the JSON parser recurses
        (b'{"a":' * 2_000 + b"1" + b"}" * 2_000, "body"),
        (b'["alice", "pw"]', "body"),
        (b'"alice"', "body"),
        (b"42", "body"),
        (b"null", "body"),
        (b"\xff\xfe{}", "body"),  # not UTF-8
        (b'{"username": "alice", "password": 1}', "password"),
        (b'{"username": ["alice"], "password": "x"}', "username"),
        (b'{"username": "alice\\n", "password": "x"}', "username"),
    ],
)
async def test_malformed_login_bodies_get_400_with_a_json_error(tmp_path: Path, body: bytes, field: str) -> None:
    """Defect 2: never a 500; a JSON error naming what is wrong."""
    async with (
        running_identity(tmp_path) as identity,
        aiohttp.ClientSession() as session,
        session.post(f"{identity.http_url}/auth/login", data=body, headers=JSON) as response,
    ):
        assert response.status == 400, await response.text()
        error = await response.json()
        assert error["error"] == "invalid_request" and error["field"] == field and error["message"]


async def test_oversized_login_bodies_get_413(tmp_path: Path) -> None:
    """Defect 2: a body size limit, announced or chunked."""
    big = b'{"username": "alice", "password": "' + b"x" * MAX_BODY_BYTES + b'"}'

    async def chunks():  # type: ignore[no-untyped-def]
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    async with running_identity(tmp_path) as identity, aiohttp.ClientSession() as session:
        url = f"{identity.http_url}/auth/login"
        for data in (big, chunks()):
            async with session.post(url, data=data, headers=JSON) as response:
                assert response.status == 413
                assert (await response.json())["error"] == "payload_too_large"
        async with session.post(url, json={"username": "alice", "password": DEMO_PASSWORDS["alice"]}) as ok:
            assert ok.status == 200


async def test_wrong_passwords_throttle_the_username_then_the_right_one_waits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 4: per username; gRPC RESOURCE_EXHAUSTED with retry-after, HTTP 429 with Retry-After."""
    caplog.set_level(logging.INFO)
    throttle = ThrottleSettings(per_username="5/minute", per_address="1000/minute")
    async with running_identity(tmp_path, throttle=throttle) as identity:
        codes = [await _grpc_login(identity, "alice", f"guess-{i}") for i in range(5)]
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 5
        async with grpc.aio.insecure_channel(identity.grpc_target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await identity_pb2_grpc.IdentityServiceStub(channel).Login(
                    identity_pb2.LoginRequest(username="alice", password=DEMO_PASSWORDS["alice"]), timeout=10
                )
        error = caught.value
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        trailer = dict(error.trailing_metadata() or ())
        assert 1 <= int(trailer["retry-after"]) <= 60
        assert retry_delay_seconds(error) == int(trailer["retry-after"])
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{identity.http_url}/auth/login", json={"username": "alice", "password": DEMO_PASSWORDS["alice"]}
            ) as response,
        ):
            assert response.status == 429
            assert 1 <= int(response.headers["Retry-After"]) <= 60
            assert (await response.json())["error"] == "too_many_requests"
        # Another username is not affected, and its success does not unlock alice.
        assert await _grpc_login(identity, "bob", DEMO_PASSWORDS["bob"]) == grpc.StatusCode.OK
        assert await _grpc_login(identity, "alice", DEMO_PASSWORDS["alice"]) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _throttled_count(identity, "username") == 3
    events = [r for r in caplog.records if getattr(r, "event", None) == "identity.login.throttled"]
    assert len(events) == 3 and all(r.levelno == logging.WARNING and r.reason == "username" for r in events)  # type: ignore[attr-defined]
    assert not any(DEMO_PASSWORDS["alice"] in r.getMessage() for r in caplog.records)


async def test_a_success_clears_the_username_count(tmp_path: Path) -> None:
    throttle = ThrottleSettings(per_username="3/minute", per_address="1000/minute")
    async with running_identity(tmp_path, throttle=throttle) as identity:
        for _ in range(3):
            for password in ("typo", DEMO_PASSWORDS["bob"]):
                expected = grpc.StatusCode.OK if password != "typo" else grpc.StatusCode.UNAUTHENTICATED
                assert await _grpc_login(identity, "bob", password) == expected


async def test_attempts_are_throttled_per_client_address_forwarded_only_from_a_trusted_proxy(
    tmp_path: Path,
) -> None:
    """Defect 4: per address; X-Forwarded-For counts only when the peer is a trusted proxy."""
    untrusted = ThrottleSettings(per_username="100/minute", per_address="3/minute")
    async with running_identity(tmp_path / "a", throttle=untrusted) as identity:
        forged = [(("x-forwarded-for", f"203.0.113.{i}"),) for i in range(4)]
        codes = [await _grpc_login(identity, f"user{i}", "x", forged[i]) for i in range(4)]
        # Forged headers do not spread the attempts over several buckets: the peer is what counts.
        assert codes[:3] == [grpc.StatusCode.UNAUTHENTICATED] * 3
        assert codes[3] == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _throttled_count(identity, "address") == 1
        async with aiohttp.ClientSession() as session:
            url = f"{identity.http_url}/auth/login"
            async with session.post(url, json={"username": "bob", "password": "x"}) as response:
                assert response.status == 429 and int(response.headers["Retry-After"]) >= 1

    behind_proxy = ThrottleSettings(per_username="100/minute", per_address="3/minute", trusted_proxies=("127.0.0.1",))
    async with running_identity(tmp_path / "b", throttle=behind_proxy) as identity:
        client_a = (("x-forwarded-for", "203.0.113.7, 127.0.0.1"),)
        client_b = (("x-forwarded-for", "198.51.100.9"),)
        codes = [await _grpc_login(identity, f"user{i}", "x", client_a) for i in range(4)]
        assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await _grpc_login(identity, "user9", "x", client_b) == grpc.StatusCode.UNAUTHENTICATED
        async with aiohttp.ClientSession() as session:
            url = f"{identity.http_url}/auth/login"
            headers = {"X-Forwarded-For": "203.0.113.7"}
            async with session.post(url, json={"username": "bob", "password": "x"}, headers=headers) as response:
                assert response.status == 429
            headers = {"X-Forwarded-For": "192.0.2.44"}
            async with session.post(url, json={"username": "bob", "password": "x"}, headers=headers) as response:
                assert response.status == 401


async def test_concurrent_password_hashing_is_bounded(tmp_path: Path) -> None:
    """Defect 4: logins beyond the hashing slots wait briefly, then get RESOURCE_EXHAUSTED (not a queue)."""
    throttle = ThrottleSettings(
        per_username="100/minute", per_address="1000/minute", max_concurrent_hashes=1, hash_wait_seconds=0.01
    )
    async with running_identity(tmp_path, throttle=throttle) as identity:
        codes = await asyncio.gather(*(_grpc_login(identity, f"user{i}", "wrong") for i in range(12)))
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and grpc.StatusCode.UNAUTHENTICATED in codes
        assert set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAUTHENTICATED}
        assert _throttled_count(identity, "concurrency") == codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
        # Once the burst is over, a login works again.
        assert await _grpc_login(identity, "alice", DEMO_PASSWORDS["alice"]) == grpc.StatusCode.OK
