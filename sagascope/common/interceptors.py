"""Building blocks for aio server interceptors that wrap unary-unary handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from sagascope.common.errors import InvalidArgument

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


def split_method(full_method: str | bytes) -> tuple[str, str]:
    """``/sagascope.orders.v1.OrderService/CreateOrder`` -> (service, method); ``("unknown", text)``
    for a name of another shape. grpc.aio hands client interceptors bytes (grpc/grpc#31092)."""
    if isinstance(full_method, bytes):
        full_method = full_method.decode()
    try:
        _, service, method = full_method.split("/", 2)
    except ValueError:
        return "unknown", full_method
    return service, method


def metadata_value(metadata: Any, key: str) -> str | None:
    """The first value of ``key`` in gRPC invocation metadata, or None."""
    for item in metadata or ():
        k, v = item
        if k == key:
            return v.decode() if isinstance(v, bytes) else v
    return None


@dataclass(frozen=True)
class UndecodableRequest:
    """What a unary handler receives instead of a message when the request bytes do not decode."""

    message_type: str
    size: int

    def error(self) -> InvalidArgument:
        return InvalidArgument(
            "request",
            f"is not a valid {self.message_type} message "
            "(truncated or corrupt bytes, or a string field that is not valid UTF-8)",
        )


def tolerant_deserializer(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer`` returning an :class:`UndecodableRequest` instead of raising on bad bytes."""
    if deserializer is None:
        return None
    message_class = getattr(deserializer, "__self__", None)
    descriptor = getattr(message_class, "DESCRIPTOR", None)
    message_type = getattr(descriptor, "full_name", "request")

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError, UnicodeDecodeError, ...: all mean "these bytes are not the message"
            return UndecodableRequest(message_type, len(data))

    return deserialize
