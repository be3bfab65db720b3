"""The tracer and logger providers: resource, sampler, exporters, batch processors.

OTLP goes over gRPC by default, or http/protobuf when ``OTEL_EXPORTER_OTLP_PROTOCOL``
says so; the exporters read the endpoint, headers, TLS and timeout variables
themselves. Without an endpoint, spans and logs go to OTLP-JSON files (files.py).
The sampler comes from ``OTEL_TRACES_SAMPLER`` via the SDK's own defaulting.
"""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from services.common.telemetry.files import (
    LOGS_FILE,
    TRACES_FILE,
    OtlpJsonFileLogExporter,
    OtlpJsonFileSpanExporter,
    service_directory,
)
from services.common.telemetry.redaction import RedactingSpanExporter
from services.common.telemetry.settings import TelemetrySettings


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


def init_tracer_provider(
    resource: Resource, exporter: SpanExporter | None, batch: bool = True
) -> TracerProvider:
    """A provider whose spans pass the redaction guard on their way to ``exporter``.

    ``batch=False`` exports each span as it ends (tests, and tools that exit at once).

    The batch processors (here and for logs) take no arguments on purpose: the SDK then reads
    ``OTEL_BSP_*`` / ``OTEL_BLRP_*`` itself, defaulting to batches of 512 from a 2048 queue, which
    under load is what the file exporters get (and they are no cheaper per item in larger batches).
    """
    provider = TracerProvider(resource=resource)  # the sampler: OTEL_TRACES_SAMPLER, read by the SDK
    if exporter is not None:
        guarded = RedactingSpanExporter(exporter)
        provider.add_span_processor(BatchSpanProcessor(guarded) if batch else SimpleSpanProcessor(guarded))
    return provider


def init_logger_provider(
    resource: Resource, exporter: LogRecordExporter | None, batch: bool = True
) -> LoggerProvider | None:
    if exporter is None:
        return None
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter) if batch else SimpleLogRecordProcessor(exporter)
    )
    return provider
