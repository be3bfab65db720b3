"""The tracer and logger providers: resource, sampler, exporters, batch processors.

OTLP goes over gRPC by default, or http/protobuf when ``OTEL_EXPORTER_OTLP_PROTOCOL``
says so; the exporters read the endpoint, headers, TLS and timeout variables
themselves. Without an endpoint, spans and logs go to OTLP-JSON lines files (files.py).
The sampler comes from ``OTEL_TRACES_SAMPLER`` via the SDK's own defaulting, wrapped so that
opentelemetry-instrumentation-sqlalchemy's pool-checkout ``connect`` spans are not recorded
unless ``SAGASCOPE_SQL_CONNECT_SPANS=on`` (:class:`WithoutPoolCheckoutSpans`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState, get_current_span
from opentelemetry.util.types import Attributes

from sagascope.common.telemetry.files import (
    LOGS_FILE,
    TRACES_FILE,
    OtlpJsonFileLogExporter,
    OtlpJsonFileSpanExporter,
    service_directory,
)
from sagascope.common.telemetry.redaction import RedactingSpanExporter
from sagascope.common.telemetry.settings import TelemetrySettings


def build_resource(service_name: str, service_version: str, environment: str) -> Resource:
    """Our defaults, overridden by ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` as the spec says."""
    defaults = Resource.create(
        {
            "service.name": service_name,
            "service.version": service_version,
            "deployment.environment": environment,
        }
    )
    return defaults.merge(OTELResourceDetector().detect())


def _otlp_span_exporter(protocol: str) -> SpanExporter:
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

        return HttpSpanExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _otlp_log_exporter(protocol: str) -> LogRecordExporter:
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter

        return HttpLogExporter()
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    return OTLPLogExporter()


def files_directory(settings: TelemetrySettings, service_name: str) -> Path:
    return service_directory(settings.directory, service_name)


def default_span_exporter(settings: TelemetrySettings, service_name: str) -> SpanExporter | None:
    if settings.traces_protocol == "none":
        return None
    if settings.traces_protocol is not None:
        return _otlp_span_exporter(settings.traces_protocol)
    return OtlpJsonFileSpanExporter(files_directory(settings, service_name) / TRACES_FILE)


def default_log_exporter(settings: TelemetrySettings, service_name: str) -> LogRecordExporter | None:
    if settings.logs_protocol == "none":
        return None
    if settings.logs_protocol is not None:
        return _otlp_log_exporter(settings.logs_protocol)
    return OtlpJsonFileLogExporter(files_directory(settings, service_name) / LOGS_FILE)


# Items per export batch unless OTEL_BSP_* / OTEL_BLRP_* say otherwise (the SDK's default is 512).
# Measured in the loaded order service (py-spy, benchmarks/telemetry_floor.py --in-situ): the export
# threads took 8.3 % of its CPU with batches of 512 and 3.4-3.8 % with 64 or 128. Idle, the batch
# size makes no difference; under load a 512-item batch's objects and ~400 KB line no longer fit in
# the cores' caches, which every other process on the machine is also using.
EXPORT_BATCH_SIZE = 128


def export_batch_size(prefix: str) -> int | None:
    """:data:`EXPORT_BATCH_SIZE`, capped by ``<prefix>_MAX_QUEUE_SIZE`` when that is set (the SDK
    refuses a batch larger than its queue); None when ``<prefix>_MAX_EXPORT_BATCH_SIZE`` is set, or
    the queue size is not a number: the SDK then reads and checks its variables as they are."""
    if f"{prefix}_MAX_EXPORT_BATCH_SIZE" in os.environ:
        return None
    queue = os.environ.get(f"{prefix}_MAX_QUEUE_SIZE")
    if queue is None:
        return EXPORT_BATCH_SIZE
    try:
        return max(1, min(EXPORT_BATCH_SIZE, int(queue)))
    except ValueError:
        return None


# The name opentelemetry-instrumentation-sqlalchemy gives its span around Engine.connect().
POOL_CHECKOUT_SPAN = "connect"


class WithoutPoolCheckoutSpans(Sampler):
    """The configured sampler, except that SQLAlchemy's ``connect`` span is never recorded.

    opentelemetry-instrumentation-sqlalchemy wraps every ``Engine.connect()`` — a checkout from a
    warm pool, two per saga — in a CLIENT span named ``connect``, with no switch to turn it off
    (the JavaScript pg instrumentation has one: open-telemetry/opentelemetry-js-contrib#3280).
    Its statement spans already carry the database time; the checkout span cost the order
    service a span's work twice a saga. Dropped here, through the SDK's sampling API, the
    instrumentation runs unchanged and skips its attribute work (the span does not record).
    ``SAGASCOPE_SQL_CONNECT_SPANS=on`` keeps them, e.g. to see a pool running dry.
    """

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner
        # ORDER_SQL_COMMENTER needs them (Telemetry.instrument_sqlalchemy sets this).
        self.keep_checkouts = False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if name == POOL_CHECKOUT_SPAN and kind is SpanKind.CLIENT and not self.keep_checkouts:
            parent = get_current_span(parent_context).get_span_context()
            return SamplingResult(Decision.DROP, None, parent.trace_state if parent.is_valid else None)
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"WithoutPoolCheckoutSpans{{{self.inner.get_description()}}}"


def init_tracer_provider(
    resource: Resource, exporter: SpanExporter | None, batch: bool = True, sql_connect_spans: bool = False
) -> TracerProvider:
    """A provider whose spans pass the redaction guard on their way to ``exporter``.

    ``sql_connect_spans``: keep SQLAlchemy's pool-checkout spans (:class:`WithoutPoolCheckoutSpans`).
    ``batch=False`` exports each span as it ends (tests, and tools that exit at once). The batch
    processors (here and for logs) otherwise take the SDK's ``OTEL_BSP_*`` / ``OTEL_BLRP_*`` handling,
    with :data:`EXPORT_BATCH_SIZE` as the default batch.
    """
    provider = TracerProvider(resource=resource)  # the sampler: OTEL_TRACES_SAMPLER, read by the SDK
    if not sql_connect_spans:
        # Before any tracer exists: a tracer keeps the sampler it was created with.
        provider.sampler = WithoutPoolCheckoutSpans(provider.sampler)
    if exporter is not None:
        guarded = RedactingSpanExporter(exporter)
        processor = (
            BatchSpanProcessor(guarded, max_export_batch_size=export_batch_size("OTEL_BSP"))
            if batch
            else SimpleSpanProcessor(guarded)
        )
        provider.add_span_processor(processor)
    return provider


def init_logger_provider(
    resource: Resource, exporter: LogRecordExporter | None, batch: bool = True
) -> LoggerProvider | None:
    if exporter is None:
        return None
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter, max_export_batch_size=export_batch_size("OTEL_BLRP"))
        if batch
        else SimpleLogRecordProcessor(exporter)
    )
    return provider
