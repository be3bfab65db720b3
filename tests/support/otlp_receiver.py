"""A test OTLP gRPC receiver: the services export to it over the network, tests read what arrived.

    with OtlpReceiver() as receiver:
        env = {**os.environ, **receiver.exporter_env()}
        ... start the services with env, drive them ...
        spans = receiver.wait_for_spans(lambda spans: any(s.name == "saga CreateOrder" for s in spans))

Built on opentelemetry-proto's collector service definitions (the same ones a real
collector serves), in a background thread with a plain ``grpc.server``. Requests are
kept as received; :class:`ReceivedSpan` / :class:`ReceivedLog` flatten them for asserts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind)


def _attributes(items: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    links: list[tuple[str, str, dict[str, Any]]]  # (trace_id, span_id, attributes)
    start_ns: int
    end_ns: int
    raw: str = field(repr=False)  # the span as JSON text, for "never contains" checks
    scope: str = ""  # the instrumentation scope's name (opentelemetry.instrumentation.grpc, ...)


@dataclass(frozen=True)
class ReceivedLog:
    service: str
    body: str
    severity_text: str
    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    raw: str = field(repr=False)


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.receiver._add("traces", request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    def Export(
        self, request: logs_service_pb2.ExportLogsServiceRequest, context: grpc.ServicerContext
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        self.receiver._add("logs", request)
        return logs_service_pb2.ExportLogsServiceResponse()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    def Export(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: grpc.ServicerContext
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self.receiver._add("metrics", request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class OtlpReceiver:
    """OTLP/gRPC on 127.0.0.1 (a free port unless given); use as a context manager."""

    def __init__(self, port: int = 0) -> None:
        self._lock = threading.Condition()
        self._requests: dict[str, list[Any]] = {"traces": [], "logs": [], "metrics": []}
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(self), self._server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_Logs(self), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(self), self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def exporter_env(self, delay_ms: int = 200) -> dict[str, str]:
        """Environment for a service process to export here promptly over plain-text gRPC."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": str(delay_ms),
            "OTEL_BLRP_SCHEDULE_DELAY": str(delay_ms),
        }

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _add(self, signal: str, request: Any) -> None:
        with self._lock:
            self._requests[signal].append(request)
            self._lock.notify_all()

    def requests(self, signal: str) -> list[Any]:
        with self._lock:
            return list(self._requests[signal])

    def clear(self) -> None:
        with self._lock:
            for requests in self._requests.values():
                requests.clear()

    # ---- flattened views ----

    def spans(self) -> list[ReceivedSpan]:
        result = []
        for request in self.requests("traces"):
            for resource_spans in request.resource_spans:
                service = str(_attributes(resource_spans.resource.attributes).get("service.name", "?"))
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        result.append(
                            ReceivedSpan(
                                service=service,
                                name=span.name,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_span_id=span.parent_span_id.hex(),
                                kind=span.kind,
                                status_code=span.status.code,
                                status_message=span.status.message,
                                attributes=_attributes(span.attributes),
                                events=[(event.name, _attributes(event.attributes)) for event in span.events],
                                links=[
                                    (link.trace_id.hex(), link.span_id.hex(), _attributes(link.attributes))
                                    for link in span.links
                                ],
                                start_ns=span.start_time_unix_nano,
                                end_ns=span.end_time_unix_nano,
                                raw=str(MessageToDict(span)),
                                scope=scope_spans.scope.name,
                            )
                        )
        return result

    def logs(self) -> list[ReceivedLog]:
        result = []
        for request in self.requests("logs"):
            for resource_logs in request.resource_logs:
                service = str(_attributes(resource_logs.resource.attributes).get("service.name", "?"))
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        body = _value(record.body)
                        result.append(
                            ReceivedLog(
                                service=service,
                                body=body if isinstance(body, str) else str(body),
                                severity_text=record.severity_text,
                                trace_id=record.trace_id.hex(),
                                span_id=record.span_id.hex(),
                                attributes=_attributes(record.attributes),
                                raw=str(MessageToDict(record)),
                            )
                        )
        return result

    def resource_attributes(self) -> list[dict[str, Any]]:
        return [
            _attributes(resource_spans.resource.attributes)
            for request in self.requests("traces")
            for resource_spans in request.resource_spans
        ]

    # ---- waiting ----

    def wait_for_spans(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 15.0
    ) -> list[ReceivedSpan]:
        return self._wait(self.spans, predicate, timeout, "spans")

    def wait_for_logs(
        self, predicate: Callable[[list[ReceivedLog]], bool], timeout: float = 15.0
    ) -> list[ReceivedLog]:
        return self._wait(self.logs, predicate, timeout, "logs")

    def _wait(
        self, read: Callable[[], list[Any]], predicate: Callable[[list[Any]], bool], timeout: float, what: str
    ) -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            items = read()
            if predicate(items):
                return items
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                names = sorted({getattr(item, "name", getattr(item, "body", "?")) for item in items})[:40]
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; got {len(items)}: {names}"
                )
            with self._lock:
                self._lock.wait(min(remaining, 0.2))


__all__ = ["OtlpReceiver", "ReceivedLog", "ReceivedSpan"]
