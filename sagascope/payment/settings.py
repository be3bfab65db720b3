"""Payment service settings, read once from the environment by :meth:`PaymentSettings.from_env`.

| variable | default | meaning |
|---|---|---|
| `PAYMENT_HOST` | `127.0.0.1` | gRPC listen address |
| `PAYMENT_GRPC_PORT` | `50053` | gRPC port (PaymentService, health, reflection) |
| `PAYMENT_METRICS_PORT` | `9103` | Prometheus `/metrics` port |
| `PAYMENT_MONGO_URL` | `mongodb://127.0.0.1:27017` | MongoDB / nx-27017 URL (password never logged) |
| `PAYMENT_MONGO_DB` | `payments` | database holding the `payments` collection |
| `PAYMENT_MONGO_CONNECT_TIMEOUT_SECONDS` | `30` | start-up retries MongoDB this long, then fails |
| `PAYMENT_MONGO_MAX_IDLE_SECONDS` | `60` | a pooled MongoDB connection idle this long is closed |
| `PAYMENT_MONGO_SOCKET_TIMEOUT_SECONDS` | `10` | one MongoDB round trip gives up after this long |
| `PAYMENT_LIMIT_MAJOR` | `1000` | largest charge in whole currency units; above it: DECLINED |
| `PAYMENT_JWKS_URL` | `http://127.0.0.1:8081/.well-known/jwks.json` | identity's JWKS (token keys) |
| `PAYMENT_JWT_ISSUER` | `sagascope-identity` | required `iss` claim |
| `PAYMENT_JWT_AUDIENCE` | `sagascope` | required `aud` claim |
| `SAGASCOPE_FAULTS_ENABLED` | `false` | fault injection on/off (`sagascope.common.faults`) |
| `SAGASCOPE_FAULTS` | empty | fault rates, e.g. `payment_decline=0.05,payment_latency=0.1` |
| `SAGASCOPE_FAULT_LATENCY_MS` | `1500` | how long `payment_latency` sleeps |

`PAYMENT_LIMIT_MAJOR=1000` means 1000.00 EUR, 1000 JPY, 1000.000 KWD: it is
converted with the currency's exponent (``money.major_to_minor``). A limit in
minor units would mean 1000.00 EUR but 100000 JPY, so ``PAYMENT_LIMIT_MINOR``
is refused with a pointer to ``PAYMENT_LIMIT_MAJOR`` rather than ignored.
The ``PAYMENT_JWKS_URL``/``_JWT_*`` rows are read by
``sagascope.common.auth.AuthSettings.from_env("PAYMENT")``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from sagascope.common.auth import AuthSettings
from sagascope.common.config import ConfigError, env_int, env_positive_float, env_str
from sagascope.common.faults import FaultSettings
from sagascope.common.ports import PAYMENT, default_mongo_url
from sagascope.common.tls import TlsSettings


@dataclass(frozen=True)
class PaymentSettings:
    auth: AuthSettings
    host: str = "127.0.0.1"
    grpc_port: int = PAYMENT.grpc.default
    metrics_port: int = PAYMENT.metrics.default
    mongo_url: str = default_mongo_url()
    mongo_db: str = "payments"
    mongo_connect_timeout_seconds: float = 30.0
    # PyMongo keeps every connection a burst opened (up to maxPoolSize) unless told to close idle
    # ones; the 60-minute soak saw payment hold 39 more sockets after two latency spikes.
    mongo_max_idle_seconds: float = 60.0
    # A store operation outlives a caller that gave up (payment/store.py), so something else must
    # end it when MongoDB never answers: PyMongo waits for a reply forever by default.
    mongo_socket_timeout_seconds: float = 10.0
    limit_major: int = 1000
    faults: FaultSettings = field(default_factory=FaultSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)

    @classmethod
    def from_env(cls) -> PaymentSettings:
        if os.environ.get("PAYMENT_LIMIT_MINOR"):
            raise ConfigError(
                "PAYMENT_LIMIT_MINOR is not supported: the limit depends on the currency's exponent; "
                "set PAYMENT_LIMIT_MAJOR (whole units, e.g. 1000 for 1000.00 EUR / 1000 JPY) instead"
            )
        limit_major = env_int("PAYMENT_LIMIT_MAJOR", 1000)
        if limit_major <= 0:
            raise ConfigError(f"PAYMENT_LIMIT_MAJOR must be a positive whole number, got {limit_major}")
        connect_timeout = env_positive_float("PAYMENT_MONGO_CONNECT_TIMEOUT_SECONDS", 30.0)
        max_idle = env_positive_float("PAYMENT_MONGO_MAX_IDLE_SECONDS", 60.0)
        socket_timeout = env_positive_float("PAYMENT_MONGO_SOCKET_TIMEOUT_SECONDS", 10.0)
        return cls(
            auth=AuthSettings.from_env("PAYMENT"),
            host=env_str("PAYMENT_HOST", "127.0.0.1"),
            grpc_port=PAYMENT.grpc.read(),
            metrics_port=PAYMENT.metrics.read(),
            mongo_url=env_str("PAYMENT_MONGO_URL", default_mongo_url()),
            mongo_db=env_str("PAYMENT_MONGO_DB", "payments"),
            mongo_connect_timeout_seconds=connect_timeout,
            mongo_max_idle_seconds=max_idle,
            mongo_socket_timeout_seconds=socket_timeout,
            limit_major=limit_major,
            faults=FaultSettings.from_env(),
            tls=TlsSettings.from_env("PAYMENT"),
        )
