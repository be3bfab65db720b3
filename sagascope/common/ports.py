"""The services' ports and default endpoints, defined once.

Each port is a :class:`PortSetting` — the environment variable that overrides it and its
default. The services' settings read their defaults here without importing the local runner;
sagascope.local.topology builds the local topology (and the backends' listeners) on top of it.
Nothing else in the repository should spell a service's port.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagascope.common.config import env_port

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class PortSetting:
    """A port and the environment variable that overrides it."""

    env: str
    default: int

    def read(self) -> int:
        """The variable's value, else the default (a malformed one is a ConfigError naming it)."""
        return env_port(self.env, self.default)


@dataclass(frozen=True)
class ServiceTopology:
    name: str
    module: str  # run as ``python -m <module>``
    host_env: str
    grpc: PortSetting
    metrics: PortSetting
    http: PortSetting | None = None

    @property
    def port_settings(self) -> tuple[PortSetting, ...]:
        return (self.grpc, self.metrics) if self.http is None else (self.grpc, self.http, self.metrics)


IDENTITY_HTTP = PortSetting("IDENTITY_HTTP_PORT", 8081)  # /auth/login, the JWKS
IDENTITY = ServiceTopology(
    "identity",
    "sagascope.identity",
    "IDENTITY_HOST",
    grpc=PortSetting("IDENTITY_GRPC_PORT", 50051),
    metrics=PortSetting("IDENTITY_METRICS_PORT", 9101),
    http=IDENTITY_HTTP,
)
ORDER = ServiceTopology(
    "order",
    "sagascope.order",
    "ORDER_HOST",
    grpc=PortSetting("ORDER_GRPC_PORT", 50052),
    metrics=PortSetting("ORDER_METRICS_PORT", 9102),
)
PAYMENT = ServiceTopology(
    "payment",
    "sagascope.payment",
    "PAYMENT_HOST",
    grpc=PortSetting("PAYMENT_GRPC_PORT", 50053),
    metrics=PortSetting("PAYMENT_METRICS_PORT", 9103),
)
SERVICES = (IDENTITY, PAYMENT, ORDER)  # start order: order calls the other two
MONGO = PortSetting("SAGASCOPE_MONGO_PORT", 27017)  # nx-27017, the embedded MongoDB-wire server
JWKS_PATH = "/.well-known/jwks.json"


def address(port: int, host: str = LOOPBACK) -> str:
    return f"{host}:{port}"


def default_jwks_url() -> str:
    return f"http://{address(IDENTITY_HTTP.default)}{JWKS_PATH}"


def default_mongo_url() -> str:
    return f"mongodb://{address(MONGO.default)}"
