"""Order service bootstrap: database + migrations, payment participant, saga executor, recovery.

:class:`OrderApp` is the service without a process around it (tests run it
in-process); :func:`serve` adds signals and the metrics endpoint.
"""

from __future__ import annotations

import logging

import grpc

from sagascope.api.admin.v1 import admin_pb2_grpc
from sagascope.api.orders.v1 import orders_pb2_grpc
from sagascope.common.auth import AuthInterceptor, ServiceTokenSource, TokenVerifier
from sagascope.common.faults import FaultHeaderInterceptor, FaultInjector, delay_statements
from sagascope.common.resilience import BreakerPolicy, Downstream, RetryPolicy
from sagascope.common.server import GrpcServer, GrpcServerConfig, run_until_stopped
from sagascope.common.telemetry import Telemetry, init_telemetry
from sagascope.common.tls import open_channel
from sagascope.order.database import create_engine, migrate
from sagascope.order.orders import OrderBook
from sagascope.order.payment_client import PaymentParticipant
from sagascope.order.repository import OrderReader
from sagascope.order.saga import OrderSagaSteps, create_order_saga
from sagascope.order.servicer import METHOD_ROLES, SERVICE_NAME, OrderServicer
from sagascope.order.settings import OrderSettings
from sagascope.saga.admin import servicer as admin_servicer
from sagascope.saga.admin.operations import SagaAdmin
from sagascope.saga.admin.telemetry import admin_observer
from sagascope.saga.executor import SagaExecutor
from sagascope.saga.gauges import register_saga_log_gauges
from sagascope.saga.recovery import RecoveryWorker
from sagascope.saga.store import SagaStore
from sagascope.saga.telemetry import saga_observer

log = logging.getLogger(__name__)


class OrderApp:
    def __init__(self, settings: OrderSettings, telemetry: Telemetry | None = None) -> None:
        self.settings = settings
        self.telemetry = telemetry or init_telemetry("order-service")
        self.engine = create_engine(settings.database_url, settings.pool_size)
        self.telemetry.instrument_sqlalchemy(self.engine)
        self.faults = FaultInjector(settings.faults)
        delay_statements(self.engine, self.faults)
        self._payment_channel = open_channel(
            settings.payment_target, settings.tls, interceptors=self.telemetry.client_interceptors()
        )
        self.payments = PaymentParticipant(
            self._payment_channel,
            Downstream(
                "payment-service",
                RetryPolicy(
                    attempt_timeout_s=settings.payment_timeout_s, max_attempts=settings.payment_max_attempts
                ),
                BreakerPolicy(fail_max=settings.breaker_fail_max, reset_timeout_s=settings.breaker_reset_s),
                self.telemetry.resilience_events(),
            ),
            ServiceTokenSource(
                settings.identity_target, settings.service_username, settings.service_password, tls=settings.tls
            ),
            self.faults,
        )
        self.store = SagaStore(self.engine, settings.instance_id, settings.lease_seconds)
        self.executor = SagaExecutor(
            create_order_saga(OrderSagaSteps(self.payments, self.faults)),
            self.store,
            saga_observer(self.telemetry),
        )
        self.recovery = RecoveryWorker(self.executor, settings.recovery_interval_s)
        definition = self.executor.definition
        self.saga_gauges = register_saga_log_gauges(
            self.telemetry.metrics.registry, self.engine, {definition.name: [s.name for s in definition.steps]}
        )
        book = OrderBook(self.executor, OrderReader(self.engine), settings.idempotency_wait_s)
        # Saga operations (sagascope.admin.v1) on this orchestrator's saga log.
        self.admin = SagaAdmin(
            self.store, {definition.name: definition}, admin_observer(self.telemetry), on_due=self.recovery.wake
        )

        def register(server: grpc.aio.Server) -> None:
            orders_pb2_grpc.add_OrderServiceServicer_to_server(OrderServicer(book), server)
            admin_pb2_grpc.add_SagaAdminServiceServicer_to_server(
                admin_servicer.SagaAdminServicer(self.admin), server
            )

        self._grpc = GrpcServer(
            GrpcServerConfig(host=settings.host, port=settings.grpc_port, tls=settings.tls),
            [SERVICE_NAME, admin_servicer.SERVICE_NAME],
            register,
            interceptors=[
                *self.telemetry.server_interceptors(),
                AuthInterceptor(
                    TokenVerifier(settings.auth, tls=settings.tls),
                    {**METHOD_ROLES, **admin_servicer.METHOD_ROLES},
                ),
                FaultHeaderInterceptor(self.faults.settings),
            ],
        )
        self.port = 0

    async def start(self) -> int:
        """Listen (NOT_SERVING), migrate, resume unfinished sagas in the background, then SERVING."""
        self.port = await self._grpc.start()
        try:
            if self.settings.migrate:
                await migrate(self.settings.database_url)
        except BaseException:
            await self.stop()
            raise
        self.recovery.start()
        self.saga_gauges.start()
        await self._grpc.set_serving()
        log.info(
            "order service listening on %s:%d (%s)", self.settings.host, self.port, self.settings.tls.describe()
        )
        return self.port

    async def stop(self) -> None:
        """NOT_SERVING, drain in-flight calls (their sagas finish), stop recovery, close pools."""
        try:
            await self._grpc.stop()
            await self.recovery.stop()
            await self.saga_gauges.stop()
        finally:
            await self._payment_channel.close()
            await self.engine.dispose()


async def serve(settings: OrderSettings) -> None:
    telemetry = init_telemetry("order-service")
    app = OrderApp(settings, telemetry)
    await run_until_stopped(app, telemetry, settings.metrics_port)
