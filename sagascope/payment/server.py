"""Payment service bootstrap: gRPC server, MongoDB, auth, faults, telemetry.

:class:`PaymentApp` builds and runs everything except signal handling and the
metrics endpoint, so tests can run it in-process; :func:`serve` is the process
entry point around it.
"""

from __future__ import annotations

import logging

import grpc

from sagascope.api.payments.v1 import payments_pb2_grpc
from sagascope.common.auth import AuthInterceptor, TokenVerifier
from sagascope.common.faults import FaultHeaderInterceptor, FaultInjector
from sagascope.common.server import GrpcServer, GrpcServerConfig, run_until_stopped
from sagascope.common.telemetry import Telemetry, init_telemetry
from sagascope.common.urls import redact_url
from sagascope.payment.servicer import METHOD_ROLES, SERVICE_NAME, PaymentServicer
from sagascope.payment.settings import PaymentSettings
from sagascope.payment.store import PaymentStore, connect, wait_until_reachable

log = logging.getLogger(__name__)


class PaymentApp:
    """The payment service without a process around it: ``port = await app.start()``, ``await app.stop()``."""

    def __init__(self, settings: PaymentSettings, telemetry: Telemetry | None = None) -> None:
        self.settings = settings
        # Each start-up ping may wait this long, so it must not exceed the whole budget.
        selection_ms = int(min(5.0, settings.mongo_connect_timeout_seconds) * 1000)
        self._mongo = connect(
            settings.mongo_url,
            server_selection_timeout_ms=selection_ms,
            max_idle_ms=int(settings.mongo_max_idle_seconds * 1000),
            socket_timeout_ms=int(settings.mongo_socket_timeout_seconds * 1000),
            event_listeners=[telemetry.mongo_pool_listener()] if telemetry else (),
        )
        self.store = PaymentStore.for_database(self._mongo, settings.mongo_db)
        servicer = PaymentServicer(self.store, settings.limit_major, FaultInjector(settings.faults))

        def register(server: grpc.aio.Server) -> None:
            payments_pb2_grpc.add_PaymentServiceServicer_to_server(servicer, server)

        interceptors: list[grpc.aio.ServerInterceptor] = [
            *(telemetry.server_interceptors() if telemetry else ()),
            AuthInterceptor(TokenVerifier(settings.auth, tls=settings.tls), METHOD_ROLES),
            FaultHeaderInterceptor(settings.faults),
        ]
        self._grpc = GrpcServer(
            GrpcServerConfig(host=settings.host, port=settings.grpc_port, tls=settings.tls),
            [SERVICE_NAME],
            register,
            interceptors=interceptors,
        )
        self.port = 0

    async def start(self) -> int:
        """Listen (health NOT_SERVING), reach MongoDB and create indexes, then report SERVING."""
        self.port = await self._grpc.start()
        try:
            await wait_until_reachable(
                self._mongo, self.settings.mongo_url, self.settings.mongo_connect_timeout_seconds
            )
            await self.store.ensure_indexes()
        except BaseException:
            # BaseException: a cancelled start-up must still release the port and the client.
            await self.stop()
            raise
        await self._grpc.set_serving()
        log.info(
            "payment service listening on %s:%d, %s (MongoDB %s, database %s)",
            self.settings.host,
            self.port,
            self.settings.tls.describe(),
            redact_url(self.settings.mongo_url),
            self.settings.mongo_db,
        )
        return self.port

    async def stop(self) -> None:
        """NOT_SERVING, drain in-flight calls, then close MongoDB (the calls may still need it)."""
        try:
            await self._grpc.stop()
        finally:
            await self._mongo.close()


async def serve(settings: PaymentSettings) -> None:
    telemetry = init_telemetry("payment-service")
    telemetry.instrument_pymongo()  # before the client exists: pymongo registers listeners at creation
    app = PaymentApp(settings, telemetry)
    await run_until_stopped(app, telemetry, settings.metrics_port)
