"""The gRPC SERVER and CLIENT spans, made by the two telemetry interceptors (grpc_interceptors.py).

The CLIENT span is the one opentelemetry-instrumentation-grpc's aio client
interceptor makes (named by the full method; ``rpc.*`` attributes; ERROR for
any code but OK), with ``traceparent`` and ``baggage`` injected into the call's
metadata. The SERVER span is the same span that library's aio server interceptor makes —
named by the full method, kind SERVER, ``rpc.system``/``rpc.service``/
``rpc.method``/``rpc.grpc.status_code``, ``rpc.user_agent``, ``net.peer.ip``/
``net.peer.port``/``net.peer.name``, the caller's ``traceparent`` and ``baggage``
as parent context, and an ERROR status only for the codes the RPC conventions
call server errors (described ``StatusCode.X:details``) — made inside the one
telemetry interceptor we already run. Written here because that library, under
the saga benchmark, was a fifth of the payment process's main-thread CPU: a
second interceptor layer, a proxy object around the servicer context of every
call, the metadata turned into a dict twice and the peer address parsed per
call; its client side stacked three interceptor layers (correlation, span,
metrics) per call where one does. Health checks and reflection get no span
(they would drown the traces).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import grpc
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Setter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from sagascope.common import correlation

_HEALTH = "grpc.health.v1.Health"
_REFLECTION = "grpc.reflection."

# Server-side errors per the RPC semantic conventions; any other code is the caller's problem.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_PROPAGATED = frozenset({"traceparent", "tracestate", "baggage"})


def traced(service: str) -> bool:
    """Everything but the health service and reflection."""
    return service != _HEALTH and not service.startswith(_REFLECTION)


def remote_context(metadata: Sequence[Any] | None) -> Context | None:
    """The caller's trace context and baggage from invocation metadata; None when it sent neither."""
    if not metadata:
        return None
    carrier: dict[str, str] = {}
    for key, value in metadata:
        if key in _PROPAGATED:
            carrier[key] = value.decode() if isinstance(value, bytes) else value
    return propagate.extract(carrier) if carrier else None


@functools.lru_cache(maxsize=1024)
def _peer_attributes(peer: str) -> Mapping[str, str]:
    """``ipv4:127.0.0.1:57284`` / ``ipv6:[::1]:57284`` -> net.peer.* (one parse per connection)."""
    if not peer or peer.startswith("unix:"):
        return {}
    try:
        ip, port = peer.split(",")[0].split(":", 1)[1].rsplit(":", 1)
    except (IndexError, ValueError):
        return {}
    ip = unquote(ip)
    attributes = {"net.peer.ip": ip, "net.peer.port": port}
    if ip in ("[::1]", "127.0.0.1"):
        attributes["net.peer.name"] = "localhost"
    return attributes


def start_server_span(
    tracer: Tracer,
    full_method: str,
    service: str,
    method: str,
    servicer_context: grpc.aio.ServicerContext,
    parent: Context | None,
) -> Span:
    metadata = servicer_context.invocation_metadata() or ()
    attributes: dict[str, Any] = {
        "rpc.system": "grpc",
        "rpc.grpc.status_code": grpc.StatusCode.OK.value[0],
        "rpc.method": method,
        "rpc.service": service,
    }
    for key, value in metadata:
        if key == "user-agent":
            attributes["rpc.user_agent"] = value
            break
    attributes.update(_peer_attributes(servicer_context.peer()))
    return tracer.start_span(full_method, context=parent, kind=SpanKind.SERVER, attributes=attributes)


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


def end_server_span(span: Span, code: grpc.StatusCode, details: Any, error: BaseException | None) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if error is not None:
        span.record_exception(error)
    if code in _SERVER_ERRORS:
        text = details.decode(errors="replace") if isinstance(details, bytes) else (details or code.value[1])
        span.set_status(Status(StatusCode.ERROR, f"{code}:{text}"))
    span.end()


def start_client_span(tracer: Tracer, full_method: str, service: str, method: str) -> Span:
    attributes = {
        "rpc.system": "grpc",
        "rpc.grpc.status_code": grpc.StatusCode.OK.value[0],
        "rpc.method": method,
        "rpc.service": service,
    }
    return tracer.start_span(full_method, kind=SpanKind.CLIENT, attributes=attributes)


class _MetadataSetter(Setter[grpc.aio.Metadata]):
    def set(self, carrier: grpc.aio.Metadata, key: str, value: str) -> None:
        carrier[key] = value


_setter = _MetadataSetter()


def with_propagation(
    details: grpc.aio.ClientCallDetails, cid: str | None, span: Span | None
) -> grpc.aio.ClientCallDetails:
    """``details`` with ``x-correlation-id`` (unless the caller set one) and, under ``span``, the
    W3C ``traceparent`` and ``baggage`` (which carries the correlation id too)."""
    metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
    if cid and correlation.HEADER not in metadata:
        metadata.add(correlation.HEADER, cid)
    if span is not None:
        propagate.inject(metadata, context=trace.set_span_in_context(span), setter=_setter)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


def end_client_span(span: Span, code: grpc.StatusCode, details: str | None, error: BaseException | None) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if error is not None:
        span.record_exception(error)
    if code != grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, details or code.value[1]))
    span.end()
