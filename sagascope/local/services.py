"""The three services (and the embedded MongoDB-wire server, nx-27017) as supervised local processes.

Used by ``sagascope up`` / ``demo`` / ``stack`` and by the process-level tests, which SIGKILL and
restart one service. Each process logs to ``<state_dir>/logs/<name>.log``; health is checked over
``grpc.health.v1`` (nx-27017: its TCP port).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from sagascope.common.urls import redact_url
from sagascope.local.supervisor import ManagedProcess, Supervisor, free_port, grpc_health, tcp_health
from sagascope.local.topology import (
    IDENTITY,
    IDENTITY_HTTP,
    JWKS_PATH,
    LOOPBACK,
    MONGO,
    ORDER,
    PAYMENT,
    address,
)


@dataclass(frozen=True)
class Ports:
    """The services' ports for one run; the defaults are the topology's."""

    identity_grpc: int = IDENTITY.grpc.default
    identity_http: int = IDENTITY_HTTP.default
    identity_metrics: int = IDENTITY.metrics.default
    order_grpc: int = ORDER.grpc.default
    order_metrics: int = ORDER.metrics.default
    payment_grpc: int = PAYMENT.grpc.default
    payment_metrics: int = PAYMENT.metrics.default
    mongo: int = MONGO.default

    @classmethod
    def from_env(cls) -> Ports:
        """The defaults, overridden by the services' own *_PORT variables (a malformed one is a
        ConfigError naming it)."""
        return cls(
            identity_grpc=IDENTITY.grpc.read(),
            identity_http=IDENTITY_HTTP.read(),
            identity_metrics=IDENTITY.metrics.read(),
            order_grpc=ORDER.grpc.read(),
            order_metrics=ORDER.metrics.read(),
            payment_grpc=PAYMENT.grpc.read(),
            payment_metrics=PAYMENT.metrics.read(),
            mongo=MONGO.read(),
        )

    @classmethod
    def free(cls) -> Ports:
        """Ephemeral ports for tests, so parallel runs and a running demo never collide."""
        return cls(*(free_port() for _ in fields(cls)))


def embedded_mongo_binary(python: str) -> Path:
    """nx-27017 beside ``python``: an optional extra (the service image leaves it out), so say how
    to get it instead of failing later with a bare "No such file"."""
    binary = Path(python).with_name("nx-27017")
    if not binary.exists():
        raise RuntimeError(
            f"the embedded MongoDB-wire server is not installed ({binary}): "
            "pip install 'sagascope[embedded-mongo]' (make install does), or set PAYMENT_MONGO_URL to a MongoDB"
        )
    return binary


@dataclass
class LocalStack:
    """nx-27017 + identity + payment + order, started in dependency order.

    Pass a ``supervisor`` to run them beside other processes (the backends); ``stop`` then stops
    only these.
    """

    state_dir: Path
    ports: Ports = field(default_factory=Ports)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    database_url: str | None = None
    mongo_url: str | None = None  # an external MongoDB: then no nx-27017 is started
    cwd: Path = field(default_factory=Path.cwd)
    # Extra order replicas (ports chosen free): the saga log's leases make them safe together.
    order_replicas: int = 1
    supervisor: Supervisor | None = None
    order_ports: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    @property
    def order_database_url(self) -> str:
        """The order service's database: the one given, else ORDER_DATABASE_URL, else SQLite here."""
        return self.database_url or os.environ.get(
            "ORDER_DATABASE_URL", f"sqlite:///{self.state_dir / 'order' / 'orders.db'}"
        )

    def storage_summary(self) -> str:
        """What the services really store in, e.g. ``orders on SQLite, payments on nx-27017 (embedded)``;
        URLs without their passwords."""
        database = self.order_database_url
        orders = "SQLite" if database.startswith("sqlite") else f"PostgreSQL {redact_url(database)}"
        if self.mongo_url is None:
            payments = f"nx-27017 (embedded, port {self.ports.mongo})"
        else:
            payments = f"MongoDB {redact_url(self.mongo_url)} (PAYMENT_MONGO_URL; no nx-27017 started)"
        return f"orders on {orders}, payments on {payments}"

    def __post_init__(self) -> None:
        self.state_dir = self.state_dir.resolve()
        if self.supervisor is None:
            self.supervisor = Supervisor(self.cwd)
        python = sys.executable
        base_env = {**os.environ, **self.extra_env, "PYTHONUNBUFFERED": "1"}
        p = self.ports
        mongo_url = self.mongo_url or f"mongodb://{address(p.mongo)}"
        # identity's HTTP port speaks TLS when it has a certificate (sagascope.common.tls)
        scheme = "https" if base_env.get("IDENTITY_TLS_CERT_FILE") else "http"
        jwks = f"{scheme}://{address(p.identity_http)}{JWKS_PATH}"
        service_env = {
            IDENTITY.grpc.env: str(p.identity_grpc),
            IDENTITY_HTTP.env: str(p.identity_http),
            IDENTITY.metrics.env: str(p.identity_metrics),
            "IDENTITY_KEYS_DIR": os.environ.get("IDENTITY_KEYS_DIR", str(self.state_dir / "identity" / "keys")),
            PAYMENT.grpc.env: str(p.payment_grpc),
            PAYMENT.metrics.env: str(p.payment_metrics),
            "PAYMENT_MONGO_URL": mongo_url,
            ORDER.grpc.env: str(p.order_grpc),
            ORDER.metrics.env: str(p.order_metrics),
            "ORDER_PAYMENT_TARGET": address(p.payment_grpc),
            "ORDER_IDENTITY_TARGET": address(p.identity_grpc),
            "ORDER_DATABASE_URL": self.order_database_url,
            "ORDER_JWKS_URL": jwks,
            "PAYMENT_JWKS_URL": jwks,
        }
        # Explicit settings from the caller win over the stack's wiring.
        env = {**base_env, **service_env, **self.extra_env}
        logs = self.state_dir / "logs"
        if self.mongo_url is None:
            mongo_dir = self.state_dir / "payment"
            mongo_dir.mkdir(parents=True, exist_ok=True)
            self._add(
                ManagedProcess(
                    "mongo",
                    [
                        str(embedded_mongo_binary(python)),
                        "--host",
                        LOOPBACK,
                        "-p",
                        str(p.mongo),
                        "--db",
                        str(mongo_dir / "payments.db"),
                        "--log-file",
                        str(logs / "nx-27017.server.log"),
                        "--pid-file",
                        str(mongo_dir / "nx-27017.pid"),
                    ],
                    dict(base_env),
                    logs / "nx-27017.log",
                    tcp_health(LOOPBACK, p.mongo),
                    listens_on={MONGO.env: p.mongo},
                )
            )
        for service, port in ((IDENTITY, p.identity_grpc), (PAYMENT, p.payment_grpc), (ORDER, p.order_grpc)):
            self._add(
                ManagedProcess(
                    service.name,
                    [python, "-m", service.module],
                    dict(env),
                    logs / f"{service.name}.log",
                    grpc_health(address(port)),
                    listens_on={s.env: int(env[s.env]) for s in service.port_settings if s.env in env},
                )
            )
        self.order_ports = [p.order_grpc]
        for replica in range(2, self.order_replicas + 1):
            grpc_port, metrics_port = free_port(), free_port()
            replica_env = {**env, ORDER.grpc.env: str(grpc_port), ORDER.metrics.env: str(metrics_port)}
            self._add(
                ManagedProcess(
                    f"order-{replica}",
                    [python, "-m", ORDER.module],
                    replica_env,
                    logs / f"order-{replica}.log",
                    grpc_health(address(grpc_port)),
                    listens_on={ORDER.grpc.env: grpc_port, ORDER.metrics.env: metrics_port},
                )
            )
            self.order_ports.append(grpc_port)

    def _add(self, process: ManagedProcess) -> None:
        self._supervisor.add(process)
        self.names.append(process.name)

    @property
    def _supervisor(self) -> Supervisor:
        assert self.supervisor is not None
        return self.supervisor

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        """This stack's processes by name, in start order."""
        return {name: self._supervisor.processes[name] for name in self.names}

    @property
    def order_target(self) -> str:
        """One address, or all replicas as an ``ipv4:`` list (clients balance round robin)."""
        if len(self.order_ports) > 1:
            return "ipv4:" + ",".join(address(port) for port in self.order_ports)
        return address(self.ports.order_grpc)

    @property
    def identity_target(self) -> str:
        return address(self.ports.identity_grpc)

    async def start(self, timeout: float = 60.0) -> None:
        """Start every process; if one fails, the ones started are stopped again."""
        await self._supervisor.start(self.names, timeout)

    async def start_one(self, name: str, timeout: float = 60.0) -> None:
        await self._supervisor.start_one(name, timeout)

    def kill(self, name: str) -> None:
        """SIGKILL: no drain, no clean-up — what a crash looks like."""
        self._supervisor.kill(name)

    async def restart(self, name: str, timeout: float = 60.0) -> None:
        await self._supervisor.restart(name, timeout)

    async def stop(self, grace: float = 15.0) -> None:
        """SIGTERM in reverse start order (callers first), so in-flight sagas drain."""
        await self._supervisor.stop(self.names, grace)
