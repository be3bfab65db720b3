"""Transport security over real sockets: mutual TLS between every service (order -> payment,
order -> identity login, JWKS over HTTPS), and clients without the right certificate refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sagascope.api.identity.v1 import identity_pb2, identity_pb2_grpc
from sagascope.api.orders.v1 import orders_pb2, orders_pb2_grpc
from sagascope.common import health_probe
from sagascope.common.auth import AuthSettings
from sagascope.common.dev_certs import IssuedFiles, issue, make_ca, make_development_pki
from sagascope.common.telemetry import init_telemetry
from sagascope.common.telemetry.settings import TelemetrySettings
from sagascope.common.tls import TlsSettings, open_channel
from sagascope.identity.server import start_identity
from sagascope.identity.settings import DEMO_USERS_FILE, IdentitySettings
from sagascope.local.supervisor import free_port, grpc_serving
from sagascope.order.server import OrderApp
from sagascope.order.settings import OrderSettings
from sagascope.payment.server import PaymentApp
from sagascope.payment.settings import PaymentSettings
from tests.support.identity import AUDIENCE, DEMO_PASSWORDS, ISSUER
from tests.support.mongo import running_nx27017
from tests.support.order_stack import request


def _tls(pki: dict[str, IssuedFiles], name: str, ca: bool = True) -> TlsSettings:
    return TlsSettings(pki[name].cert, pki[name].key, pki["ca"].cert if ca else None)


@dataclass
class TlsStack:
    identity: str
    payment: str
    order: str
    pki: dict[str, IssuedFiles]

    def client(self, **overrides: Path | None) -> TlsSettings:
        return replace(_tls(self.pki, "client"), **overrides)


async def _start_stack(tmp_path: Path, mutual: bool) -> AsyncIterator[TlsStack]:
    pki = make_development_pki(tmp_path / "certs")
    identity = await start_identity(
        IdentitySettings(
            host="127.0.0.1", grpc_port=0, http_port=0, metrics_port=0, users_file=DEMO_USERS_FILE,
            keys_dir=tmp_path / "keys", issuer=ISSUER, audience=AUDIENCE, tls=_tls(pki, "identity", ca=mutual),
        )
    )  # fmt: skip
    jwks = f"https://localhost:{identity.http_port}/.well-known/jwks.json"
    auth = AuthSettings(jwks_url=jwks, issuer=ISSUER, audience=AUDIENCE)
    async with running_nx27017(tmp_path / "mongo") as mongo:
        # Every service verifies its peers against the CA; only with `mutual` do servers demand client certs.
        payment_tls, order_tls = _tls(pki, "payment"), _tls(pki, "order")
        if not mutual:
            payment_tls = replace(payment_tls, ca_file=None)
        payment = PaymentApp(
            PaymentSettings(auth=auth, grpc_port=free_port(), metrics_port=0, mongo_url=mongo, tls=payment_tls)
        )
        payment_port = await payment.start()
        order = OrderApp(
            OrderSettings(
                host="127.0.0.1", grpc_port=0, metrics_port=0, database_url=f"sqlite:///{tmp_path / 'o.db'}",
                migrate=True, pool_size=5, payment_target=f"127.0.0.1:{payment_port}",  # an IP SAN
                identity_target=f"localhost:{identity.grpc_port}", service_username="order-service",
                service_password=DEMO_PASSWORDS["order-service"], payment_timeout_s=2.0, payment_max_attempts=2,
                breaker_fail_max=5, breaker_reset_s=2.0, lease_seconds=2.0, recovery_interval_s=0.5,
                idempotency_wait_s=5.0, instance_id="tls-test", auth=auth, tls=order_tls,
            ),
            init_telemetry("order-service", settings=TelemetrySettings(enabled=False)),
        )  # fmt: skip
        order_port = await order.start()
        try:
            yield TlsStack(
                f"localhost:{identity.grpc_port}", f"localhost:{payment_port}", f"localhost:{order_port}", pki
            )
        finally:
            await order.stop()
            await payment.stop()
            await identity.stop()


@pytest.fixture
async def mtls(tmp_path: Path) -> AsyncIterator[TlsStack]:
    async for stack in _start_stack(tmp_path, mutual=True):
        yield stack


async def _health(target: str, channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(reply.status)


async def test_a_saga_runs_over_mutual_tls_end_to_end(mtls: TlsStack) -> None:
    """Client -> identity and order, order -> identity (service login) and payment, JWKS over HTTPS."""
    client = mtls.client()
    async with open_channel(mtls.identity, client) as channel:
        login = await identity_pb2_grpc.IdentityServiceStub(channel).Login(
            identity_pb2.LoginRequest(username="alice", password=DEMO_PASSWORDS["alice"]), timeout=10
        )
    async with open_channel(mtls.order, client) as channel:
        reply = await orders_pb2_grpc.OrderServiceStub(channel).CreateOrder(
            request("tls-1"), metadata=(("authorization", f"Bearer {login.access_token}"),), timeout=20
        )
    assert reply.order.status == orders_pb2.ORDER_STATUS_COMPLETED
    for target in (mtls.identity, mtls.payment, mtls.order):
        async with open_channel(target, client) as channel:
            assert await _health(target, channel) == health_pb2.HealthCheckResponse.SERVING


async def test_clients_without_a_certificate_from_the_ca_are_refused(mtls: TlsStack, tmp_path: Path) -> None:
    other_ca = make_ca(tmp_path / "other", common_name="someone else's CA")
    stranger = issue(other_ca, tmp_path / "other", "client")
    refused = {
        "no client certificate": mtls.client(cert_file=None, key_file=None),
        "a certificate from another CA": mtls.client(cert_file=stranger.cert, key_file=stranger.key),
    }
    for target in (mtls.identity, mtls.payment, mtls.order):
        for why, tls in refused.items():
            async with open_channel(target, tls) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await _health(target, channel)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, (target, why)
        async with grpc.aio.insecure_channel(target) as plaintext:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _health(target, plaintext)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, (target, "plaintext")


async def test_health_probe_follows_the_client_tls_settings(mtls: TlsStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local supervisor's probe (as compose's) passes the certificate flags from SAGASCOPE_TLS_*."""
    assert not await grpc_serving(mtls.order)
    client = mtls.client()
    monkeypatch.setenv("SAGASCOPE_TLS_CERT_FILE", str(client.cert_file))
    monkeypatch.setenv("SAGASCOPE_TLS_KEY_FILE", str(client.key_file))
    monkeypatch.setenv("SAGASCOPE_TLS_CA_FILE", str(client.ca_file))
    assert await grpc_serving(mtls.order, timeout=5)
    # ... and compose's probe, with grpc-health-probe's flags.
    flags = ["--tls-ca-file", str(client.ca_file), "--tls-cert-file", str(client.cert_file),
             "--tls-key-file", str(client.key_file)]  # fmt: skip
    assert await asyncio.to_thread(health_probe.main, [mtls.payment, *flags]) == 0
    assert await asyncio.to_thread(health_probe.main, [mtls.payment, "--tls-ca-file", str(client.ca_file)]) == 1


async def test_tls_without_client_certificates_when_no_ca_is_set(tmp_path: Path) -> None:
    async for stack in _start_stack(tmp_path, mutual=False):
        ca_only = stack.client(cert_file=None, key_file=None)
        async with open_channel(stack.payment, ca_only) as channel:
            assert await _health(stack.payment, channel) == health_pb2.HealthCheckResponse.SERVING
        async with grpc.aio.insecure_channel(stack.payment) as plaintext:
            with pytest.raises(grpc.aio.AioRpcError):
                await _health(stack.payment, plaintext)
