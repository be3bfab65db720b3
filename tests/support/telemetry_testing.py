"""Helpers for telemetry tests: a Telemetry wired to in-memory exporters, and a tiny gRPC service.

``in_memory_telemetry()`` returns the Telemetry plus its span and log exporters and the
captured JSON stdout; the root logger is restored afterwards.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sagascope.common.server import GrpcServer, GrpcServerConfig
from sagascope.common.telemetry import Telemetry, TelemetrySettings, init_telemetry

ECHO_SERVICE = "sagascope.test.v1.Echo"
ECHO_METHOD = f"/{ECHO_SERVICE}/Call"


@dataclass
class CapturedTelemetry:
    telemetry: Telemetry
    spans: InMemorySpanExporter
    logs: InMemoryLogRecordExporter
    stdout: io.StringIO

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.getvalue().splitlines() if line.strip()]

    def events(self) -> list[str]:
        return [line["event"] for line in self.json_lines()]


@contextmanager
def in_memory_telemetry(
    service_name: str = "test-service", settings: TelemetrySettings | None = None
) -> Iterator[CapturedTelemetry]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    spans, logs, stdout = InMemorySpanExporter(), InMemoryLogRecordExporter(), io.StringIO()
    telemetry = init_telemetry(
        service_name,
        settings=settings or TelemetrySettings(),
        span_exporter=spans,
        log_exporter=logs,
        stream=stdout,
    )
    try:
        yield CapturedTelemetry(telemetry, spans, logs, stdout)
    finally:
        telemetry.shutdown()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


EchoBehavior = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


async def start_echo_server(
    behavior: EchoBehavior, interceptors: list[grpc.aio.ServerInterceptor]
) -> GrpcServer:
    """A GrpcServer (the real bootstrap and interceptor chain) serving one bytes-in, bytes-out method."""

    def register(server: grpc.aio.Server) -> None:
        handler = grpc.method_handlers_generic_handler(
            ECHO_SERVICE, {"Call": grpc.unary_unary_rpc_method_handler(behavior)}
        )
        server.add_generic_rpc_handlers((handler,))

    server = GrpcServer(GrpcServerConfig(host="127.0.0.1", port=0), [ECHO_SERVICE], register, interceptors)
    await server.start()
    await server.set_serving()
    return server
