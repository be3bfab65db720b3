"""Order service settings, read once in ``serve()`` from ``ORDER_*`` environment variables.

| variable | default | meaning |
|---|---|---|
| ORDER_HOST | 127.0.0.1 | listen address |
| ORDER_GRPC_PORT | 50052 | gRPC port |
| ORDER_METRICS_PORT | 9102 | Prometheus /metrics port (0 = off) |
| ORDER_DATABASE_URL | sqlite:///var/order/orders.db | `postgresql://...` (asyncpg) or `sqlite:///...` (aiosqlite) |
| ORDER_DB_MIGRATE | true | run Alembic migrations to head at start-up |
| ORDER_DB_POOL_SIZE | 10 | connection pool size (PostgreSQL) |
| ORDER_SQL_COMMENTER | false | PostgreSQL: the trace context in each statement and session (docs/databases.md) |
| ORDER_PAYMENT_TARGET | 127.0.0.1:50053 | payment service address |
| ORDER_IDENTITY_TARGET | 127.0.0.1:50051 | identity service address (for the service token) |
| ORDER_SERVICE_USERNAME | order-service | the service account used to call payment |
| ORDER_SERVICE_PASSWORD | (dev default) | its password; required outside development |
| ORDER_PAYMENT_TIMEOUT_SECONDS | 2.0 | deadline of one payment call attempt |
| ORDER_PAYMENT_MAX_ATTEMPTS | 3 | attempts per payment call (retries on UNAVAILABLE/DEADLINE_EXCEEDED only) |
| ORDER_BREAKER_FAIL_MAX | 5 | consecutive failed calls (each after its retries) that open the payment breaker |
| ORDER_BREAKER_RESET_SECONDS | 10 | how long the breaker stays open before a trial call |
| ORDER_SAGA_LEASE_SECONDS | 30 | how long an orchestrator owns a saga without writing before another may take it |
| ORDER_RECOVERY_INTERVAL_SECONDS | 5 | how often recovery looks for unfinished sagas |
| ORDER_IDEMPOTENCY_WAIT_SECONDS | 5 | how long a repeated CreateOrder waits for the first one's saga to finish |
| ORDER_INSTANCE_ID | host-pid-random | this replica's name in saga leases |
| ORDER_JWKS_URL / ORDER_JWT_ISSUER / ORDER_JWT_AUDIENCE | identity defaults | token verification |
| SAGASCOPE_FAULTS_ENABLED / SAGASCOPE_FAULTS / SAGASCOPE_FAULT_LATENCY_MS | off | fault injection (faults.py) |
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from sagascope.common.auth import AuthSettings
from sagascope.common.config import ConfigError, deployment_environment, env_bool, env_float, env_int, env_str
from sagascope.common.faults import FaultSettings
from sagascope.common.ports import IDENTITY, ORDER, PAYMENT, address
from sagascope.common.tls import TlsSettings

DEV_SERVICE_PASSWORD = "order-service-dev-secret"  # DEVELOPMENT ONLY (matches demo_users.json)


@dataclass(frozen=True)
class OrderSettings:
    host: str
    grpc_port: int
    metrics_port: int
    database_url: str
    migrate: bool
    pool_size: int
    payment_target: str
    identity_target: str
    service_username: str
    service_password: str
    payment_timeout_s: float
    payment_max_attempts: int
    breaker_fail_max: int
    breaker_reset_s: float
    lease_seconds: float
    recovery_interval_s: float
    idempotency_wait_s: float
    instance_id: str
    auth: AuthSettings
    faults: FaultSettings = field(default_factory=FaultSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    sql_commenter: bool = False

    @classmethod
    def from_env(cls) -> OrderSettings:
        password = env_str("ORDER_SERVICE_PASSWORD", DEV_SERVICE_PASSWORD)
        if password == DEV_SERVICE_PASSWORD and deployment_environment() != "development":
            raise ConfigError(
                "ORDER_SERVICE_PASSWORD must be set outside development (the default is a dev secret)"
            )
        return cls(
            host=env_str("ORDER_HOST", "127.0.0.1"),
            grpc_port=ORDER.grpc.read(),
            metrics_port=ORDER.metrics.read(),
            database_url=env_str("ORDER_DATABASE_URL", "sqlite:///var/order/orders.db"),
            migrate=env_bool("ORDER_DB_MIGRATE", True),
            pool_size=env_int("ORDER_DB_POOL_SIZE", 10),
            sql_commenter=env_bool("ORDER_SQL_COMMENTER", False),
            payment_target=env_str("ORDER_PAYMENT_TARGET", address(PAYMENT.grpc.default)),
            identity_target=env_str("ORDER_IDENTITY_TARGET", address(IDENTITY.grpc.default)),
            service_username=env_str("ORDER_SERVICE_USERNAME", "order-service"),
            service_password=password,
            payment_timeout_s=env_float("ORDER_PAYMENT_TIMEOUT_SECONDS", 2.0),
            payment_max_attempts=env_int("ORDER_PAYMENT_MAX_ATTEMPTS", 3),
            breaker_fail_max=env_int("ORDER_BREAKER_FAIL_MAX", 5),
            breaker_reset_s=env_float("ORDER_BREAKER_RESET_SECONDS", 10.0),
            lease_seconds=env_float("ORDER_SAGA_LEASE_SECONDS", 30.0),
            recovery_interval_s=env_float("ORDER_RECOVERY_INTERVAL_SECONDS", 5.0),
            idempotency_wait_s=env_float("ORDER_IDEMPOTENCY_WAIT_SECONDS", 5.0),
            instance_id=env_str(
                "ORDER_INSTANCE_ID", f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            ),
            auth=AuthSettings.from_env("ORDER"),
            tls=TlsSettings.from_env("ORDER"),
            faults=FaultSettings.from_env(),
        )
