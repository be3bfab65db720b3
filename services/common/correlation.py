"""The correlation id: one per business request, carried across every service.

Accepted from ``x-correlation-id`` metadata (Kong sets it in compose) or
generated here, kept in a ContextVar for the request, and returned to the caller
in the response's initial metadata. Outgoing calls copy it with
:func:`outgoing_metadata`; telemetry also puts it in OTel baggage.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

import grpc

from services.common.interceptors import UnaryBehavior, metadata_value, wrap_unary

HEADER = "x-correlation-id"
BAGGAGE_KEY = "correlation_id"
_VALID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

_current: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def current() -> str | None:
    return _current.get()


def set_current(value: str | None) -> None:
    _current.set(value)


def new_id() -> str:
    return uuid.uuid4().hex


def accept(candidate: str | None) -> str:
    """The caller's id if it is sane, otherwise a fresh one (never trust odd input into logs)."""
    if candidate and _VALID.match(candidate):
        return candidate
    return new_id()


def outgoing_metadata(extra: tuple[tuple[str, str], ...] = ()) -> tuple[tuple[str, str], ...]:
    cid = current()
    return ((HEADER, cid), *extra) if cid else extra


class CorrelationInterceptor(grpc.aio.ServerInterceptor):
    """Sets the request's correlation id and echoes it back in response metadata."""

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = await continuation(handler_call_details)
        cid = accept(metadata_value(handler_call_details.invocation_metadata, HEADER))

        def wrap(behavior: UnaryBehavior) -> UnaryBehavior:
            async def with_correlation(request, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
                token = _current.set(cid)
                try:
                    await context.send_initial_metadata(((HEADER, cid),))
                    return await behavior(request, context)
                finally:
                    _current.reset(token)

            return with_correlation

        return wrap_unary(handler, wrap)
