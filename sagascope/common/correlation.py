"""The correlation id: one per business request, carried across every service.

Accepted from ``x-correlation-id`` metadata (Kong sets it in compose), else from
the ``correlation_id`` entry of the W3C ``baggage`` header (how it travels from
order to payment), else generated here. It is kept in a ContextVar for the
request, put into OTel baggage so outgoing calls carry it on, and returned to
the caller in the response's initial metadata. Outgoing calls can also copy it
with :func:`outgoing_metadata`; telemetry's client interceptor does both.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import grpc
from opentelemetry import baggage, context
from opentelemetry.baggage.propagation import W3CBaggagePropagator

from sagascope.common.interceptors import UnaryBehavior, metadata_value, wrap_unary

HEADER = "x-correlation-id"
BAGGAGE_KEY = "correlation_id"
BAGGAGE_HEADER = "baggage"
_VALID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

_current: ContextVar[str | None] = ContextVar("correlation_id", default=None)
_baggage = W3CBaggagePropagator()


def current() -> str | None:
    return _current.get()


@contextmanager
def bound(value: str) -> Iterator[None]:
    """``value`` is the correlation id (ContextVar and OTel baggage) for this block.

    For work that runs outside a request, such as a saga resumed by recovery.
    """
    token = _current.set(value)
    otel_token = context.attach(baggage.set_baggage(BAGGAGE_KEY, value))
    try:
        yield
    finally:
        context.detach(otel_token)
        _current.reset(token)


@contextmanager
def in_baggage(cid: str | None) -> Iterator[None]:
    """Make ``cid`` the ``correlation_id`` baggage entry for this block (no-op when it already is)."""
    if not cid or baggage.get_baggage(BAGGAGE_KEY) == cid:
        yield
        return
    token = context.attach(baggage.set_baggage(BAGGAGE_KEY, cid))
    try:
        yield
    finally:
        context.detach(token)


def new_id() -> str:
    return uuid.uuid4().hex


def accept(candidate: str | None) -> str:
    """The caller's id if it is sane, otherwise a fresh one (never trust odd input into logs)."""
    if candidate and _VALID.fullmatch(candidate):
        return candidate
    return new_id()


def from_baggage_header(value: str | None) -> str | None:
    """The ``correlation_id`` entry of a W3C ``baggage`` header value, if any."""
    if not value:
        return None
    entry = baggage.get_baggage(
        BAGGAGE_KEY, _baggage.extract({BAGGAGE_HEADER: value}, context=context.Context())
    )
    # The Python propagator keeps W3C entry properties (";prop=x") in the value; they are not the id.
    return str(entry).split(";", 1)[0].strip() or None if entry else None


def from_metadata(metadata: object) -> str | None:
    """The caller's correlation id: ``x-correlation-id`` first, then the baggage entry."""
    header = metadata_value(metadata, HEADER)
    if header:
        return header
    return from_baggage_header(metadata_value(metadata, BAGGAGE_HEADER))


def with_header(details: grpc.aio.ClientCallDetails, cid: str) -> grpc.aio.ClientCallDetails:
    """``details`` with ``x-correlation-id: cid`` added, unless the caller set one already."""
    metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
    if HEADER in metadata:
        return details
    metadata.add(HEADER, cid)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


def outgoing_metadata(extra: tuple[tuple[str, str], ...] = ()) -> tuple[tuple[str, str], ...]:
    cid = current()
    return ((HEADER, cid), *extra) if cid else extra


class CorrelationInterceptor(grpc.aio.ServerInterceptor):
    """Sets the request's correlation id and echoes it back in response metadata."""

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = await continuation(handler_call_details)
        cid = accept(from_metadata(handler_call_details.invocation_metadata))

        def wrap(behavior: UnaryBehavior) -> UnaryBehavior:
            async def with_correlation(request, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
                with bound(cid):
                    await context.send_initial_metadata(((HEADER, cid),))
                    return await behavior(request, context)

            return with_correlation

        return wrap_unary(handler, wrap)


class ClientCorrelationInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Outgoing calls carry the correlation id: ``x-correlation-id`` and the ``correlation_id`` baggage
    entry. Outermost on the channel, so the span interceptor after it injects that baggage too."""

    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        found = current() or baggage.get_baggage(BAGGAGE_KEY)
        if not found:
            return await continuation(client_call_details, request)
        cid = str(found)
        with in_baggage(cid):
            return await continuation(with_header(client_call_details, cid), request)
