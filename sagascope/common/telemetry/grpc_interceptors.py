"""What sagascope adds to the upstream gRPC spans: RED metrics, the access log, the correlation id.

- server (runs inside upstream's SERVER span): ``correlation_id`` on that span and
  back into baggage (upstream replaces the context's baggage with the caller's, which
  may not carry it); the call counted and timed under the go-grpc-prometheus names
  with the span's ``trace_id`` as exemplar; one ``grpc.server.handled`` log line per
  call. Health checks and reflection are counted but not logged.
- client (runs inside upstream's CLIENT span): the client RED metrics with its
  ``trace_id`` as exemplar. The correlation header is correlation.py's.

Domain errors reach the server interceptor as gRPC aborts (ErrorMappingInterceptor
is innermost), so the status code is read from the servicer context.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import trace

from sagascope.common import correlation
from sagascope.common.interceptors import UnaryBehavior, split_method, wrap_unary
from sagascope.common.telemetry.instrumentation import is_infrastructure_service
from sagascope.common.telemetry.metrics import RpcMetrics, trace_exemplar

log = logging.getLogger("sagascope.grpc")

UNARY = "unary"


def status_code(value: Any) -> grpc.StatusCode:
    """What ``ServicerContext.code()`` returned (None before any abort, an enum, or its number)."""
    if value is None:
        return grpc.StatusCode.OK
    if isinstance(value, grpc.StatusCode):
        return value
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


class ServerTelemetryInterceptor(grpc.aio.ServerInterceptor):
    """``correlation_id`` on the current (upstream) span and in baggage, the server RED metrics and the
    access log line. Must come after upstream's span interceptor in the chain."""

    def __init__(
        self,
        metrics: RpcMetrics | None,
        access_log: bool = True,
        quiet: Callable[[str], bool] = is_infrastructure_service,
    ) -> None:
        self.metrics = metrics
        self.access_log = access_log
        self.quiet = quiet

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = await continuation(handler_call_details)
        service, method = split_method(handler_call_details.method)
        metrics = self.metrics
        access_log = self.access_log and not self.quiet(service)

        def wrap(behavior: UnaryBehavior) -> UnaryBehavior:
            async def observed(request, servicer_context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
                cid = correlation.current()
                span = trace.get_current_span()
                if cid and span.is_recording():
                    span.set_attribute(correlation.BAGGAGE_KEY, cid)
                if metrics is not None:
                    metrics.started.labels(UNARY, service, method).inc()
                start = time.perf_counter()
                code = grpc.StatusCode.OK
                try:
                    with correlation.in_baggage(cid):
                        response = await behavior(request, servicer_context)
                    code = status_code(servicer_context.code())
                    return response
                except asyncio.CancelledError:
                    code = grpc.StatusCode.CANCELLED
                    raise
                except grpc.aio.AbortError:
                    code = status_code(servicer_context.code() or grpc.StatusCode.UNKNOWN)
                    raise
                except Exception:
                    code = grpc.StatusCode.UNKNOWN
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

            return observed

        return wrap_unary(handler, wrap)


class ClientMetricsInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """The client RED metrics. After upstream's span interceptor on the channel, so the exemplar is
    its CLIENT span's trace."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self.metrics = metrics

    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        service, method = split_method(client_call_details.method)
        metrics = self.metrics
        metrics.started.labels(UNARY, service, method).inc()
        start = time.perf_counter()
        code = grpc.StatusCode.UNKNOWN
        try:
            call = await continuation(client_call_details, request)
            code = status_code(await call.code())
            return call
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            metrics.handled.labels(UNARY, service, method, code.name).inc()
            metrics.handling.labels(UNARY, service, method).observe(
                time.perf_counter() - start, exemplar=trace_exemplar()
            )
