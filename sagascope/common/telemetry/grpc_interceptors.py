"""gRPC server and client interceptors: spans, RED metrics, the correlation id on spans and in baggage.

- server, one layer: the SERVER span from the caller's ``traceparent``/``baggage``
  (grpc_spans.py), tagged with ``correlation_id``; the id put into baggage (the
  caller's baggage may not carry it); the call counted and timed under the
  go-grpc-prometheus names with a ``trace_id`` exemplar; one
  ``grpc.server.handled`` log line per call. Health checks and reflection are
  counted but neither traced nor logged.
- client, one layer: the correlation id into baggage and ``x-correlation-id``,
  the CLIENT span with ``traceparent`` and ``baggage`` injected, the client RED
  metrics with the span's trace as exemplar.

Domain errors reach these interceptors as gRPC aborts (ErrorMappingInterceptor
is innermost), so the status code is read from the servicer context.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from opentelemetry import baggage, context, trace
from opentelemetry.trace import Tracer

from sagascope.common import correlation
from sagascope.common.interceptors import UnaryBehavior, split_method, wrap_unary
from sagascope.common.telemetry.grpc_spans import (
    end_client_span,
    end_server_span,
    remote_context,
    start_client_span,
    start_server_span,
    status_code,
    traced,
    with_propagation,
)
from sagascope.common.telemetry.metrics import RpcMetrics, trace_exemplar

log = logging.getLogger("sagascope.grpc")

UNARY = "unary"


@contextmanager
def correlation_baggage(cid: str | None) -> Iterator[None]:
    """Make ``cid`` the ``correlation_id`` baggage entry for this block (no-op when it already is)."""
    if not cid or baggage.get_baggage(correlation.BAGGAGE_KEY) == cid:
        yield
        return
    token = context.attach(baggage.set_baggage(correlation.BAGGAGE_KEY, cid))
    try:
        yield
    finally:
        context.detach(token)


def _split(method: str | bytes) -> tuple[str, str]:
    if isinstance(method, bytes):
        method = method.decode()
    try:
        return split_method(method)
    except ValueError:
        return "unknown", method


class ServerTelemetryInterceptor(grpc.aio.ServerInterceptor):
    """The SERVER span (grpc_spans.py), the correlation id on it and in baggage, the server RED
    metrics and the access log line, in one layer. ``tracer=None``: no span."""

    def __init__(self, metrics: RpcMetrics | None, tracer: Tracer | None = None, access_log: bool = True) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self.access_log = access_log

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = await continuation(handler_call_details)
        full_method = handler_call_details.method
        service, method = _split(full_method)
        is_traced = traced(service)
        tracer = self.tracer if is_traced else None
        metrics = self.metrics
        access_log = self.access_log and is_traced

        def wrap(behavior: UnaryBehavior) -> UnaryBehavior:
            async def observed(request, servicer_context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
                span = token = None
                if tracer is not None:
                    parent = remote_context(servicer_context.invocation_metadata())
                    span = start_server_span(tracer, full_method, service, method, servicer_context, parent)
                    token = context.attach(trace.set_span_in_context(span, parent))
                cid = correlation.current()
                if cid and span is not None:
                    span.set_attribute(correlation.BAGGAGE_KEY, cid)
                if metrics is not None:
                    metrics.started.labels(UNARY, service, method).inc()
                start = time.perf_counter()
                code = grpc.StatusCode.OK
                error: BaseException | None = None
                try:
                    with correlation_baggage(cid):
                        response = await behavior(request, servicer_context)
                    code = status_code(servicer_context.code())
                    return response
                except asyncio.CancelledError:
                    code = grpc.StatusCode.CANCELLED
                    raise
                except grpc.aio.AbortError:
                    code = status_code(servicer_context.code() or grpc.StatusCode.UNKNOWN)
                    raise
                except Exception as exc:
                    code, error = grpc.StatusCode.UNKNOWN, exc
                    raise
                finally:
                    elapsed = time.perf_counter() - start
                    if metrics is not None:
                        metrics.handled.labels(UNARY, service, method, code.name).inc()
                        metrics.handling.labels(UNARY, service, method).observe(
                            elapsed, exemplar=trace_exemplar()
                        )
                    # One line per call, from every service: it is what ties a participant's side
                    # of a saga into the saga's correlated logs (business code logs nothing).
                    if access_log:
                        log.info(
                            "%s/%s %s in %.1f ms",
                            service,
                            method,
                            code.name,
                            elapsed * 1000,
                            extra={
                                "event": "grpc.server.handled",
                                "grpc.service": service,
                                "grpc.method": method,
                                "grpc.code": code.name,
                                "duration_ms": round(elapsed * 1000, 3),
                            },
                        )
                    if span is not None and token is not None:
                        end_server_span(span, code, servicer_context.details(), error)
                        context.detach(token)

            return observed

        return wrap_unary(handler, wrap)


class ClientTelemetryInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """The client side, one layer: the correlation id into baggage and ``x-correlation-id``, the
    CLIENT span with ``traceparent``/``baggage`` injected (grpc_spans.py), the client RED metrics.

    ``tracer=None`` / ``metrics=None`` (telemetry off): the correlation id still travels.
    """

    def __init__(self, metrics: RpcMetrics | None = None, tracer: Tracer | None = None) -> None:
        self.metrics = metrics
        self.tracer = tracer

    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        cid = correlation.current() or baggage.get_baggage(correlation.BAGGAGE_KEY)
        with correlation_baggage(str(cid) if cid else None):
            full_method = client_call_details.method
            if isinstance(full_method, bytes):  # grpc/grpc#31092
                full_method = full_method.decode()
            service, method = _split(full_method)
            span = start_client_span(self.tracer, full_method, service, method) if self.tracer else None
            details = with_propagation(client_call_details, str(cid) if cid else None, span)
            metrics = self.metrics
            if metrics is not None:
                metrics.started.labels(UNARY, service, method).inc()
            start = time.perf_counter()
            code = grpc.StatusCode.UNKNOWN
            reason: str | None = None
            error: BaseException | None = None
            try:
                call = await continuation(details, request)
                code = status_code(await call.code())
                if span is not None and code != grpc.StatusCode.OK:
                    reason = await call.details()
                return call
            except grpc.aio.AioRpcError as exc:
                code, reason, error = exc.code(), exc.details(), exc
                raise
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                if metrics is not None:
                    metrics.handled.labels(UNARY, service, method, code.name).inc()
                    metrics.handling.labels(UNARY, service, method).observe(
                        time.perf_counter() - start, exemplar=trace_exemplar(span)
                    )
                if span is not None:
                    end_client_span(span, code, reason, error)
