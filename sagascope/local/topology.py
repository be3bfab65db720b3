"""The local topology, defined once: every port a local sagascope process listens on.

The services' own ports and defaults live in sagascope.common.ports (a service reads them without
importing this runner) and are re-exported here; this module adds the backends' listeners.
sagascope.local.services passes the same variables to the processes it starts; the backends'
config files (shared with docker compose) expand the variables that :func:`backend_environment`
returns, with their compose values as the fallback. Nothing else in the repository should spell a
local port.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

from sagascope.common.ports import (
    IDENTITY,
    IDENTITY_HTTP,
    JWKS_PATH,
    LOOPBACK,
    MONGO,
    ORDER,
    PAYMENT,
    SERVICES,
    PortSetting,
    ServiceTopology,
    address,
    default_jwks_url,
    default_mongo_url,
)

__all__ = [
    "COLLECTOR",
    "ELASTICSEARCH",
    "IDENTITY",
    "IDENTITY_HTTP",
    "JAEGER",
    "JWKS_PATH",
    "LOOPBACK",
    "MONGO",
    "ORDER",
    "PAYMENT",
    "PROMETHEUS",
    "SERVICES",
    "Listener",
    "PortSetting",
    "ServiceTopology",
    "address",
    "backend_environment",
    "default_jwks_url",
    "default_mongo_url",
    "service_telemetry_environment",
]


# --- the backends -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    """One backend listener and how its config file is told where to listen: either one
    ``host:port`` variable (``env``) or a host and a port variable (``host_env``/``port_env``)."""

    port: int
    env: str | None = None
    host_env: str | None = None
    port_env: str | None = None
    host: str = LOOPBACK

    @property
    def address(self) -> str:
        return address(self.port, self.host)

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.env:
            env[self.env] = self.address
        if self.host_env:
            env[self.host_env] = self.host
        if self.port_env:
            env[self.port_env] = str(self.port)
        return env


@dataclass(frozen=True)
class _Backend:
    def listeners(self) -> Iterator[Listener]:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Listener):
                yield value

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for listener in self.listeners():
            env.update(listener.environment())
        return env


@dataclass(frozen=True)
class CollectorTopology(_Backend):
    """observability/otel-collector/otelcol-config.yml"""

    otlp_grpc: Listener = Listener(4317, env="OTELCOL_OTLP_GRPC_ENDPOINT")
    otlp_http: Listener = Listener(4318, env="OTELCOL_OTLP_HTTP_ENDPOINT")
    health: Listener = Listener(13133, env="OTELCOL_HEALTH_ENDPOINT")
    metrics: Listener = Listener(8888, host_env="OTELCOL_METRICS_HOST", port_env="OTELCOL_METRICS_PORT")
    health_path: str = "/"


@dataclass(frozen=True)
class JaegerTopology(_Backend):
    """observability/jaeger/config.yaml; OTLP on 4327/4328 locally, beside the collector's 4317/4318."""

    otlp_grpc: Listener = Listener(4327, env="JAEGER_OTLP_GRPC_ENDPOINT")
    otlp_http: Listener = Listener(4328, env="JAEGER_OTLP_HTTP_ENDPOINT")
    health: Listener = Listener(13134, env="JAEGER_HEALTH_ENDPOINT")
    query_http: Listener = Listener(16686, env="JAEGER_QUERY_HTTP_ENDPOINT")
    query_grpc: Listener = Listener(16685, env="JAEGER_QUERY_GRPC_ENDPOINT")
    metrics: Listener = Listener(8889, host_env="JAEGER_METRICS_HOST", port_env="JAEGER_METRICS_PORT")
    health_path: str = "/status"


@dataclass(frozen=True)
class ElasticsearchTopology(_Backend):
    """observability/elk/elasticsearch.yml (Elasticsearch expands ``${ES_NETWORK_HOST}``; the port
    is its default, 9200)."""

    http: Listener = Listener(9200, host_env="ES_NETWORK_HOST")
    health_path: str = "/_cluster/health?wait_for_status=yellow&timeout=1s"


@dataclass(frozen=True)
class PrometheusTopology(_Backend):
    """Prometheus takes its listen address on the command line (``--web.listen-address``)."""

    web: Listener = Listener(9090)
    health_path: str = "/-/ready"


COLLECTOR = CollectorTopology()
JAEGER = JaegerTopology()
ELASTICSEARCH = ElasticsearchTopology()
PROMETHEUS = PrometheusTopology()


def backend_environment(deployment_environment: str = "local") -> dict[str, str]:
    """What the shared config files expand to run locally: every listener, plus where the
    collector exports (Jaeger's OTLP gRPC, Elasticsearch, Prometheus's remote-write receiver)."""
    env = {"DEPLOYMENT_ENVIRONMENT": deployment_environment}
    for backend in (COLLECTOR, JAEGER, ELASTICSEARCH, PROMETHEUS):
        env.update(backend.environment())
    env["JAEGER_OTLP_ENDPOINT"] = JAEGER.otlp_grpc.address
    env["ELASTICSEARCH_ENDPOINT"] = ELASTICSEARCH.http.url
    env["PROMETHEUS_REMOTE_WRITE_URL"] = f"{PROMETHEUS.web.url}/api/v1/write"
    return env


def service_telemetry_environment() -> dict[str, str]:
    """What the services need to report to the local collector, and the CLI (`sagascope trace` /
    `logs`) to read back from Jaeger and Elasticsearch. tests/e2e take their defaults from here."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": COLLECTOR.otlp_grpc.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "JAEGER_URL": JAEGER.query_http.url,
        "ELASTICSEARCH_URL": ELASTICSEARCH.http.url,
    }


def main() -> None:
    """``python -m sagascope.local.topology``: the backends' local environment as KEY=VALUE lines
    (for shell tools such as scripts/backends/collector_validate.sh)."""
    for key, value in backend_environment().items():
        print(f"{key}={value}")


if __name__ == "__main__":
    main()
