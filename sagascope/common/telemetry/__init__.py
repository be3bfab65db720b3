"""One setup call gives a service all of its telemetry.

``init_telemetry(service_name)`` configures JSON logging to stdout, traces and
logs over OTLP (or to OTLP-JSON files under ``var/telemetry/`` when no endpoint
is set), and Prometheus instruments, and returns a :class:`Telemetry` whose
interceptors, tracers and resilience sink the service wires in. (The saga engine builds its
observer from these primitives: sagascope.saga.telemetry; this package knows nothing of sagas.)

Spans of gRPC, SQL, MongoDB and HTTP calls come from the upstream contrib
instrumentations (instrumentation.py), opted into the stable database and HTTP
semantic conventions unless ``OTEL_SEMCONV_STABILITY_OPT_IN`` is set.

``SAGASCOPE_TELEMETRY=off`` keeps the JSON logs and the saga log events but
makes spans no-ops, stops metric updates and OTLP/file export (the benchmark's
"off" side).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

import grpc
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from sagascope.common import correlation
from sagascope.common.telemetry import sql_context
from sagascope.common.telemetry.grpc_interceptors import ClientMetricsInterceptor, ServerTelemetryInterceptor
from sagascope.common.telemetry.instrumentation import (
    default_semconv_opt_in,
    grpc_client_span_interceptors,
    grpc_server_span_interceptor,
)
from sagascope.common.telemetry.logs import init_logging, open_log_file
from sagascope.common.telemetry.metrics import Metrics, MetricsServer, create_metrics
from sagascope.common.telemetry.resilience_events import TelemetryResilienceEvents
from sagascope.common.telemetry.settings import TelemetrySettings
from sagascope.common.telemetry.tracing import (
    WithoutPoolCheckoutSpans,
    build_resource,
    default_log_exporter,
    default_span_exporter,
    init_logger_provider,
    init_tracer_provider,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from sagascope.common.telemetry.mongo_pool import MongoCheckoutCounter

__all__ = [
    "ResilienceEvents",
    "Telemetry",
    "TelemetrySettings",
    "init_telemetry",
]

ResilienceEvents = TelemetryResilienceEvents
"""``.retry(target, code, attempt, delay_s)``, ``.timeout(target)``, ``.breaker_state(target, state)``."""

log = logging.getLogger(__name__)

@dataclass
class Telemetry:
    service_name: str
    settings: TelemetrySettings = field(default_factory=TelemetrySettings)
    tracer_provider: TracerProvider | None = None
    logger_provider: LoggerProvider | None = None
    metrics: Metrics = field(default_factory=create_metrics)
    _events: TelemetryResilienceEvents | None = None
    _metrics_server: MetricsServer | None = None
    _undo: list[Callable[[], None]] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def tracer(self, name: str) -> trace.Tracer:
        """A tracer of this service's provider; a no-op one when telemetry is off."""
        if not self.enabled or self.tracer_provider is None:
            return trace.NoOpTracer()
        return self.tracer_provider.get_tracer(name)

    def server_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """Upstream's SERVER span, then (inside it) correlation_id on the span, the server RED metrics
        and the access log. Telemetry off keeps the access log line (JSON logs stay, as everywhere else)."""
        if not self.enabled or self.tracer_provider is None:
            return [ServerTelemetryInterceptor(None)]
        return [grpc_server_span_interceptor(self.tracer_provider), ServerTelemetryInterceptor(self.metrics.server)]

    def instrument_aiohttp_server(self) -> None:
        """One SERVER span per HTTP request of aiohttp apps created after this call (method,
        route, status — never the body, so a login's password and token stay out)."""
        if not self.enabled:
            return
        from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

        self._instrument_once(AioHttpServerInstrumentor())

    def client_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """The correlation id into baggage and metadata (first, so upstream's CLIENT span interceptor
        injects that baggage), the span, then inside it the client RED metrics.
        Telemetry off: the correlation id still travels."""
        carry_correlation = correlation.ClientCorrelationInterceptor()
        if not self.enabled or self.tracer_provider is None:
            return [carry_correlation]
        return [
            carry_correlation,
            *grpc_client_span_interceptors(self.tracer_provider),
            ClientMetricsInterceptor(self.metrics.client),
        ]

    def resilience_events(self) -> TelemetryResilienceEvents:
        if self._events is None:
            self._events = TelemetryResilienceEvents(self.metrics.resilience if self.enabled else None)
        return self._events

    def instrument_sqlalchemy(self, engine: AsyncEngine, commenter: bool = False) -> None:
        """One CLIENT span per SQL statement on ``engine``, from opentelemetry-instrumentation-sqlalchemy
        (its ``connect`` span per pool checkout only with SAGASCOPE_SQL_CONNECT_SPANS=on: tracing.py).
        ``commenter``: the trace context goes to the server too, in each statement's sqlcommenter
        comment and in the session's application_name (sql_context.py says what it costs).
        The engine's pool checkouts are counted on /metrics either way (runtime_metrics.py)."""
        self.metrics.runtime.sqlalchemy_pool(engine)
        if not self.enabled:
            return
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        if not commenter:
            self._instrument_once(SQLAlchemyInstrumentor(), engine=engine.sync_engine)
            return
        self._instrument_once(
            SQLAlchemyInstrumentor(),
            engine=engine.sync_engine,
            enable_commenter=True,
            commenter_options=sql_context.COMMENTER_OPTIONS,
        )
        # The application_name hook reads the saga step from the checkout span's parent, so with the
        # commenter on, the `connect` spans are recorded again (a dropped span keeps no parent).
        sampler = self.tracer_provider.sampler if self.tracer_provider is not None else None
        if isinstance(sampler, WithoutPoolCheckoutSpans):
            sampler.keep_checkouts = True
        sql_context.trace_application_name(engine, self.service_name)

    def instrument_pymongo(self) -> None:
        if not self.enabled:
            return
        from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

        self._instrument_once(PymongoInstrumentor())

    def mongo_pool_listener(self) -> MongoCheckoutCounter:
        """A PyMongo pool listener for the client (``event_listeners=[...]``) that feeds
        ``db_client_connections_checked_out{pool="pymongo"}`` (mongo_pool.py)."""
        return self.metrics.runtime.pymongo_pool()

    def _instrument_once(self, instrumentor: Any, **options: Any) -> None:
        """A contrib instrumentor is a process-wide singleton: only the first Telemetry in a process
        instruments (and undoes it on shutdown); later ones are told so in the log."""
        if instrumentor.is_instrumented_by_opentelemetry:
            log.warning("%s already instrumented in this process; not again", type(instrumentor).__name__)
            return
        instrumentor.instrument(tracer_provider=self.tracer_provider, **options)
        if not instrumentor.is_instrumented_by_opentelemetry:
            # Its dependency check refused the installed library version (logged by opentelemetry).
            log.error("%s did not instrument: no spans from it", type(instrumentor).__name__)
            return
        self._undo.append(instrumentor.uninstrument)

    def start_metrics_server(self, port: int, host: str | None = None) -> None:
        """prometheus_client's HTTP server on ``host`` (SAGASCOPE_METRICS_HOST, 127.0.0.1); port 0 = off."""
        if port == 0 or self._metrics_server is not None:
            return
        with contextlib.suppress(RuntimeError):  # python_asyncio_tasks counts the loop this is called on
            self.metrics.runtime.watch_loop(asyncio.get_running_loop())
        self._metrics_server = MetricsServer(self.metrics.registry, host or self.settings.metrics_host, port)
        log.info(
            "metrics on http://%s:%d/metrics", host or self.settings.metrics_host, self._metrics_server.port
        )

    @property
    def metrics_port(self) -> int | None:
        return self._metrics_server.port if self._metrics_server else None

    def force_flush(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush()
        if self.logger_provider is not None:
            self.logger_provider.force_flush()

    def shutdown(self) -> None:
        """Flush spans and logs, stop the metrics server. Safe to call twice."""
        if self._metrics_server is not None:
            self._metrics_server.close()
            self._metrics_server = None
        for undo in self._undo:
            undo()
        self._undo.clear()
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.logger_provider is not None:
            # Records logged after this go to stdout only.
            root = logging.getLogger()
            for handler in [h for h in root.handlers if getattr(h, "provider", None) is self.logger_provider]:
                root.removeHandler(handler)
            self.logger_provider.shutdown()
        for handler in logging.getLogger().handlers:
            handler.flush()


def init_telemetry(
    service_name: str,
    service_version: str = "0.1.0",
    *,
    settings: TelemetrySettings | None = None,
    span_exporter: SpanExporter | None = None,
    log_exporter: LogRecordExporter | None = None,
    stream: TextIO | None = None,
) -> Telemetry:
    """Configure logging, traces, OTLP/file export and metrics for one service process.

    ``span_exporter`` / ``log_exporter`` replace the configured exporters and export
    synchronously (tests and tools); ``stream`` replaces stdout for the JSON lines.
    """
    settings = settings or TelemetrySettings.from_env()
    if stream is None and settings.log_file is not None:
        stream = open_log_file(settings.log_file)
    default_semconv_opt_in()
    resource = build_resource(service_name, service_version, settings.environment)
    name = str(resource.attributes.get("service.name", service_name))
    metrics = create_metrics()
    if not settings.enabled:
        init_logging(name, settings.log_level, None, stream)
        return Telemetry(name, settings, metrics=metrics)

    injected = span_exporter is not None or log_exporter is not None
    tracer_provider = init_tracer_provider(
        resource,
        span_exporter if injected else default_span_exporter(settings, name),
        batch=not injected,
        sql_connect_spans=settings.sql_connect_spans,
    )
    logger_provider = init_logger_provider(
        resource, log_exporter if injected else default_log_exporter(settings, name), batch=not injected
    )
    init_logging(
        name, settings.log_level, logger_provider, stream, sampled_only=settings.log_export == "sampled"
    )
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # The first provider in the process becomes the global one (for libraries that ask for it).
        trace.set_tracer_provider(tracer_provider)
    return Telemetry(name, settings, tracer_provider, logger_provider, metrics)
