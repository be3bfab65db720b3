"""Build, start and stop the identity service: gRPC, HTTP and the metrics endpoint."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from prometheus_client import CollectorRegistry

from sagascope.api.identity.v1 import identity_pb2_grpc
from sagascope.common.config import ConfigError
from sagascope.common.server import GrpcServer, GrpcServerConfig, wait_for_stop_signal
from sagascope.common.telemetry import init_telemetry
from sagascope.common.telemetry.metrics import LoginMetrics
from sagascope.common.tls import server_ssl_context
from sagascope.identity.http import IdentityHttpServer
from sagascope.identity.keys import KeyRing
from sagascope.identity.login import LoginService
from sagascope.identity.servicer import SERVICE_NAME, IdentityServicer
from sagascope.identity.settings import IdentitySettings
from sagascope.identity.throttle import LoginThrottle
from sagascope.identity.tokens import TokenIssuer
from sagascope.identity.users import UserStore

log = logging.getLogger(__name__)


@dataclass
class RunningIdentity:
    """A started identity service; ``grpc_port``/``http_port`` are the bound ports (useful with port 0)."""

    settings: IdentitySettings
    keys: KeyRing
    grpc_server: GrpcServer
    http_server: IdentityHttpServer
    grpc_port: int
    http_port: int
    login_metrics: LoginMetrics

    async def stop(self) -> None:
        await self.grpc_server.stop()
        await self.http_server.stop()


async def start_identity(
    settings: IdentitySettings,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    login_metrics: LoginMetrics | None = None,
) -> RunningIdentity:
    """Load users and keys (failing fast, naming the variable), then start gRPC and HTTP."""
    users = UserStore.load(settings.users_file)
    if users.demo and not settings.is_development:
        raise ConfigError(
            f'IDENTITY_USERS_FILE {settings.users_file} is a demo users file ("demo": true) with published '
            f"passwords; it is refused outside development (SAGASCOPE_ENV={settings.environment})"
        )
    keys = KeyRing(
        settings.keys_dir, signing_kid=settings.signing_kid, allow_generate=settings.is_development
    )
    keys.reload()
    issuer = TokenIssuer(
        keys, issuer=settings.issuer, audience=settings.audience, ttl_seconds=settings.token_ttl_seconds
    )
    login_metrics = login_metrics or LoginMetrics.create(CollectorRegistry())
    login = LoginService(users, issuer, LoginThrottle(settings.throttle, login_metrics))

    def register(server: grpc.aio.Server) -> None:
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(IdentityServicer(login, keys), server)

    grpc_server = GrpcServer(
        GrpcServerConfig(host=settings.host, port=settings.grpc_port, tls=settings.tls),
        [SERVICE_NAME],
        register,
        interceptors=interceptors,
    )
    http_server = IdentityHttpServer(
        login, keys, settings.host, settings.http_port, ssl_context=server_ssl_context(settings.tls)
    )
    grpc_port = await grpc_server.start()
    try:
        http_port = await http_server.start()
    except BaseException:
        # BaseException: a cancelled start must not leave the gRPC port bound.
        await grpc_server.stop()
        raise
    await grpc_server.set_serving()
    log.info(
        "identity listening: gRPC %s:%d (%s), HTTP%s %s:%d, %d users",
        settings.host,
        grpc_port,
        settings.tls.describe(),
        "S" if settings.tls.serves_tls else "",
        settings.host,
        http_port,
        len(users),
    )
    return RunningIdentity(settings, keys, grpc_server, http_server, grpc_port, http_port, login_metrics)


async def serve(settings: IdentitySettings) -> None:
    telemetry = init_telemetry("identity-service")
    telemetry.instrument_aiohttp_server()  # before the HTTP app exists: it patches aiohttp's Application
    try:
        running = await start_identity(
            settings, interceptors=telemetry.server_interceptors(), login_metrics=telemetry.metrics.login
        )
        telemetry.start_metrics_server(settings.metrics_port)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, _reload_keys, running.keys)
        try:
            await wait_for_stop_signal()
            log.info("stopping identity service")
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            await running.stop()
    finally:
        telemetry.shutdown()


def _reload_keys(keys: KeyRing) -> None:
    """SIGHUP: pick up a rotated key directory without a restart; a bad directory keeps the old keys."""
    try:
        keys.reload()
    except (ConfigError, OSError, ValueError) as exc:
        log.error("key reload failed, keeping the previous keys: %s", exc)
