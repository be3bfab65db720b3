"""Building blocks for aio server interceptors that wrap unary-unary handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

UnaryBehavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def wrap_unary(handler: grpc.RpcMethodHandler | None, wrap: Callable[[UnaryBehavior], UnaryBehavior]) -> Any:
    """Return ``handler`` with its unary-unary behaviour replaced by ``wrap(behaviour)``.

    Streaming handlers (reflection, health Watch) pass through untouched.
    """
    if handler is None or handler.unary_unary is None:
        return handler
    return grpc.unary_unary_rpc_method_handler(
        wrap(handler.unary_unary),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def split_method(full_method: str) -> tuple[str, str]:
    """``/sagascope.orders.v1.OrderService/CreateOrder`` -> (service, method)."""
    _, service, method = full_method.split("/", 2)
    return service, method


def metadata_value(metadata: Any, key: str) -> str | None:
    """The first value of ``key`` in gRPC invocation metadata, or None."""
    for item in metadata or ():
        k, v = item
        if k == key:
            return v.decode() if isinstance(v, bytes) else v
    return None
