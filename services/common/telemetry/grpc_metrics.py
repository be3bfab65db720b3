"""gRPC server and client interceptors: RED metrics, the correlation id on spans and in baggage.

The OTel instrumentation's interceptors make the spans and carry ``traceparent``
and ``baggage``; these sit next to them:

- server, inside the OTel server span: tags the span with ``correlation_id``,
  puts the id into baggage (the OTel interceptor starts from the *incoming*
  context, so it has to be added again here), counts and times the call under
  the go-grpc-prometheus names with a ``trace_id`` exemplar, and writes one
  ``grpc.server.handled`` log line per call (health checks excepted).
- client, outside the OTel client interceptor: makes sure the correlation id is
  in baggage and in ``x-correlation-id`` before the OTel interceptor injects.
- client, inside it: the client-side RED metrics.

Domain errors reach these interceptors as gRPC aborts (ErrorMappingInterceptor
is innermost), so the status code is read from the servicer context.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from opentelemetry import baggage, context, trace

from services.common import correlation
from services.common.interceptors import UnaryBehavior, split_method, wrap_unary
from services.common.telemetry.metrics import RpcMetrics, trace_exemplar

log = logging.getLogger("sagascope.grpc")

UNARY = "unary"
_QUIET_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")


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


def _status_name(code: Any) -> str:
    if code is None:
        return grpc.StatusCode.OK.name
    if isinstance(code, grpc.StatusCode):
        return code.name
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return grpc.StatusCode.UNKNOWN.name


def _split(method: str | bytes) -> tuple[str, str]:
    if isinstance(method, bytes):
        method = method.decode()
    try:
        return split_method(method)
    except ValueError:
        return "unknown", method


class ServerTelemetryInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: RpcMetrics | None, access_log: bool = True) -> None:
        self.metrics = metrics
        self.access_log = access_log

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = await continuation(handler_call_details)
        service, method = _split(handler_call_details.method)
        quiet = service.startswith(_QUIET_SERVICES)
        metrics = self.metrics
        access_log = self.access_log and not quiet

        def wrap(behavior: UnaryBehavior) -> UnaryBehavior:
            async def observed(request, servicer_context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
                cid = correlation.current()
                if cid:
                    trace.get_current_span().set_attribute(correlation.BAGGAGE_KEY, cid)
                if metrics is not None:
                    metrics.started.labels(UNARY, service, method).inc()
                start = time.perf_counter()
                code = "OK"
                try:
                    with correlation_baggage(cid):
                        response = await behavior(request, servicer_context)
                    code = _status_name(servicer_context.code())
                    return response
                except asyncio.CancelledError:
                    code = "CANCELLED"
                    raise
                except grpc.aio.AbortError:
                    code = _status_name(servicer_context.code() or grpc.StatusCode.UNKNOWN)
                    raise
                except Exception:
                    code = "UNKNOWN"
                    raise
                finally:
                    elapsed = time.perf_counter() - start
                    if metrics is not None:
                        metrics.handled.labels(UNARY, service, method, code).inc()
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
                            code,
                            elapsed * 1000,
                            extra={
                                "event": "grpc.server.handled",
                                "grpc.service": service,
                                "grpc.method": method,
                                "grpc.code": code,
                                "duration_ms": round(elapsed * 1000, 3),
                            },
                        )

            return observed

        return wrap_unary(handler, wrap)


def _with_correlation_header(details: grpc.aio.ClientCallDetails, cid: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
    if correlation.HEADER in metadata:
        return details
    metadata.add(correlation.HEADER, cid)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class ClientCorrelationInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Outermost on the channel: the correlation id goes out in baggage and as ``x-correlation-id``."""

    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        cid = correlation.current() or baggage.get_baggage(correlation.BAGGAGE_KEY)
        if not cid:
            return await continuation(client_call_details, request)
        cid = str(cid)
        with correlation_baggage(cid):
            return await continuation(_with_correlation_header(client_call_details, cid), request)


class ClientMetricsInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Innermost on the channel (inside the client span, so the exemplar is that span's trace)."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self.metrics = metrics

    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        service, method = _split(client_call_details.method)
        self.metrics.started.labels(UNARY, service, method).inc()
        start = time.perf_counter()
        code = "UNKNOWN"
        try:
            call = await continuation(client_call_details, request)
            code = _status_name(await call.code())
            return call
        except grpc.aio.AioRpcError as exc:
            code = _status_name(exc.code())
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        finally:
            self.metrics.handled.labels(UNARY, service, method, code).inc()
            self.metrics.handling.labels(UNARY, service, method).observe(
                time.perf_counter() - start, exemplar=trace_exemplar()
            )
