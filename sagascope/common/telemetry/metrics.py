"""Prometheus instruments, one typed object per concern, in a registry per service.

Names follow ARCHITECTURE.md (saga metrics) and go-grpc-prometheus (the gRPC
RED metrics), so existing dashboards and habits work. Histograms take a
``trace_id`` exemplar from the current span; exemplars are only shown in the
OpenMetrics exposition, which the HTTP server serves when the scraper asks for
it (``Accept: application/openmetrics-text``), as Prometheus does when exemplar
storage is on.

Units: every histogram carries its unit (``seconds``). Counters and gauges that
count things have no Prometheus unit suffix — the contract's names
(``saga_started_total``) allow none — so their help text names what they count.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, fields
from wsgiref.simple_server import WSGIServer

from opentelemetry import trace
from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.gc_collector import GCCollector

from sagascope.common.telemetry.runtime_metrics import RuntimeMetrics

# Sagas last from milliseconds (happy path) to minutes (retries, recovery).
SAGA_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# prometheus.DefBuckets, as go-grpc-prometheus uses.
RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

RESULT_SUCCESS = "success"
RESULT_FAILURE = "failure"


def trace_exemplar(span: trace.Span | None = None) -> dict[str, str] | None:
    """``{"trace_id": ...}`` of ``span`` (default: the current span) when it is sampled, else None."""
    context = (span or trace.get_current_span()).get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return {"trace_id": format(context.trace_id, "032x")}


# The label sets on the hot path are few and fixed (saga x step x result, service x method x code).
LABELLED_CHILDREN_CACHED = 1024


def memoize_labels(instruments: object) -> None:
    """Give every instrument of a metrics dataclass a memoised ``labels()``.

    prometheus_client validates and stringifies the values and takes a lock on every ``labels()``
    call; the child for a label set never changes while the metric lives (nothing here calls
    ``remove()``/``clear()`` on these), so each set is looked up once (~1 % of the order service's
    CPU under load otherwise).
    """
    for item in fields(instruments):  # type: ignore[arg-type]
        metric = getattr(instruments, item.name)
        metric.labels = functools.lru_cache(LABELLED_CHILDREN_CACHED)(metric.labels)


@dataclass(frozen=True)
class SagaMetrics:
    started: Counter
    finished: Counter
    duration: Histogram
    step_duration: Histogram
    compensations: Counter
    in_flight: Gauge
    recovered: Counter

    def __post_init__(self) -> None:
        memoize_labels(self)

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SagaMetrics:
        return cls(
            started=Counter(
                "saga_started", "Saga runs started (count of sagas).", ["saga"], registry=registry
            ),
            finished=Counter(
                "saga_finished",
                "Saga runs finished, by outcome: completed, compensated or failed (count of sagas).",
                ["saga", "outcome"],
                registry=registry,
            ),
            duration=Histogram(
                "saga_duration_seconds",
                "Time from the start (or resumption) of a saga run to its outcome, in seconds.",
                ["saga", "outcome"],
                unit="seconds",
                buckets=SAGA_BUCKETS,
                registry=registry,
            ),
            step_duration=Histogram(
                "saga_step_duration_seconds",
                "Duration of one forward saga step, by result: success or failure, in seconds.",
                ["saga", "step", "result"],
                unit="seconds",
                buckets=SAGA_BUCKETS,
                registry=registry,
            ),
            compensations=Counter(
                "saga_compensations",
                "Compensations run, by step and result: success or failure (count of compensations).",
                ["saga", "step", "result"],
                registry=registry,
            ),
            in_flight=Gauge(
                "saga_in_flight",
                "Saga runs in progress in this process (count of sagas).",
                ["saga"],
                registry=registry,
            ),
            recovered=Counter(
                "saga_recovered",
                "Saga runs resumed by recovery after a restart or a lost lease (count of sagas).",
                ["saga"],
                registry=registry,
            ),
        )


@dataclass(frozen=True)
class RpcMetrics:
    """One side (server or client) of the go-grpc-prometheus RED metrics."""

    started: Counter
    handled: Counter
    handling: Histogram

    def __post_init__(self) -> None:
        memoize_labels(self)

    @classmethod
    def create(cls, registry: CollectorRegistry, side: str) -> RpcMetrics:
        what = "received by the server" if side == "server" else "started by the client"
        done = "completed by the server" if side == "server" else "completed on the client"
        return cls(
            started=Counter(
                f"grpc_{side}_started",
                f"RPCs {what} (count of RPCs).",
                ["grpc_type", "grpc_service", "grpc_method"],
                registry=registry,
            ),
            handled=Counter(
                f"grpc_{side}_handled",
                f"RPCs {done}, by gRPC status code (count of RPCs).",
                ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
                registry=registry,
            ),
            handling=Histogram(
                f"grpc_{side}_handling_seconds",
                f"Latency of RPCs {done}, in seconds.",
                ["grpc_type", "grpc_service", "grpc_method"],
                unit="seconds",
                buckets=RPC_BUCKETS,
                registry=registry,
            ),
        )


@dataclass(frozen=True)
class ResilienceMetrics:
    breaker_state: Gauge
    retries: Counter
    timeouts: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ResilienceMetrics:
        return cls(
            breaker_state=Gauge(
                "circuit_breaker_state",
                "Circuit breaker state per downstream: 0 closed, 1 half-open, 2 open (state code).",
                ["target"],
                registry=registry,
            ),
            retries=Counter(
                "resilience_retries",
                "Retries of outgoing calls, by downstream and the status code retried (count of retries).",
                ["target", "code"],
                registry=registry,
            ),
            timeouts=Counter(
                "resilience_timeouts",
                "Outgoing calls that ran out of their deadline, by downstream (count of calls).",
                ["target"],
                registry=registry,
            ),
        )


@dataclass(frozen=True)
class LoginMetrics:
    """The identity service's login guard (sagascope.identity.throttle)."""

    throttled: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> LoginMetrics:
        return cls(
            throttled=Counter(
                "identity_login_throttled",
                "Login attempts refused by throttling, by reason: username, address or concurrency "
                "(count of attempts).",
                ["reason"],
                registry=registry,
            )
        )


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    saga: SagaMetrics
    server: RpcMetrics
    client: RpcMetrics
    resilience: ResilienceMetrics
    login: LoginMetrics
    runtime: RuntimeMetrics  # python_asyncio_tasks, python_threads, db_client_connections_checked_out


def create_metrics(registry: CollectorRegistry | None = None) -> Metrics:
    """All instruments in a fresh registry (not the global one, so several can live in one test)."""
    registry = registry or CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    if GC_COLLECTOR is not None:
        GCCollector(registry=registry)
    return Metrics(
        registry=registry,
        saga=SagaMetrics.create(registry),
        server=RpcMetrics.create(registry, "server"),
        client=RpcMetrics.create(registry, "client"),
        resilience=ResilienceMetrics.create(registry),
        login=LoginMetrics.create(registry),
        runtime=RuntimeMetrics(registry),
    )


class MetricsServer:
    """prometheus_client's HTTP server in a daemon thread (it negotiates OpenMetrics itself)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        server, thread = start_http_server(port, addr=host, registry=registry)
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        self.port = int(server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
