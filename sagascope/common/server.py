"""gRPC server bootstrap shared by every service.

Health (``grpc.health.v1``: NOT_SERVING while starting and while draining),
server reflection (``v1`` and ``v1alpha``), the error-mapping interceptor, a max
message size, and a graceful stop that drains in-flight calls on SIGTERM/SIGINT.

A request whose bytes do not decode never reaches a servicer: the error-mapping
interceptor swaps each handler's deserializer (unary and streaming) for one returning an
:class:`UndecodableRequest` marker instead of raising (grpc aio would answer UNKNOWN
with the exception's class name and log a traceback), and answers INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from sagascope.common import correlation
from sagascope.common.errors import ServiceError
from sagascope.common.interceptors import UnaryBehavior, UndecodableRequest, tolerant_deserializer
from sagascope.common.outages import is_backend_outage
from sagascope.common.reflection import enable_reflection
from sagascope.common.tls import TlsSettings, server_credentials

if TYPE_CHECKING:
    from sagascope.common.telemetry import Telemetry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GrpcServerConfig:
    host: str
    port: int
    max_message_bytes: int = 1024 * 1024
    grace_seconds: float = 10.0
    tls: TlsSettings = field(default_factory=TlsSettings)


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Turns :class:`ServiceError` into its status (with its ``google.rpc`` details), undecodable
    requests into INVALID_ARGUMENT, a lost database/MongoDB link into UNAVAILABLE (a WARNING, no
    traceback), and anything else into a generic INTERNAL."""

    def __init__(self) -> None:
        # Innermost in the chain, so what it wraps is the method's registered handler, the same
        # object on every call: wrapped once per method, not per call (unknown methods aren't kept).
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        method = handler_call_details.method
        wrapped = self._handlers.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return None
            wrapped = self._handlers[method] = _mapped_handler(handler, method)
        return wrapped


def _mapped_handler(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    if handler.unary_unary is None:
        return _streaming_with_decode_guard(handler, method)

    def wrap(behavior: UnaryBehavior) -> UnaryBehavior:
        async def mapped(request, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
            try:
                if isinstance(request, UndecodableRequest):
                    raise _refuse_undecodable(request, method)
                return await behavior(request, context)
            except ServiceError as exc:
                await context.abort(exc.code, exc.message, exc.trailing_metadata())
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:
                if is_backend_outage(exc):
                    log.warning("backend unavailable in %s: %s: %s", method, type(exc).__name__,
                                str(exc).splitlines()[0] if str(exc) else "")
                    await context.abort(
                        grpc.StatusCode.UNAVAILABLE,
                        "a backing store is unavailable; retry with the same idempotency key "
                        f"(correlation id {correlation.current() or '-'})",
                    )
                # The details stay in our log; the caller gets the id to quote.
                log.exception("unhandled error in %s", method)
                await context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"internal error; quote correlation id {correlation.current() or '-'}",
                )

        return mapped

    return grpc.unary_unary_rpc_method_handler(
        wrap(handler.unary_unary),
        request_deserializer=tolerant_deserializer(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


def _refuse_undecodable(request: UndecodableRequest, method: str) -> ServiceError:
    # A client bug or a probe, not our failure: WARNING, no traceback.
    log.warning(
        "undecodable %s request (%d bytes) to %s",
        request.message_type,
        request.size,
        method,
        extra={"event": "grpc.request.undecodable"},
    )
    return request.error()


def _streaming_with_decode_guard(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """Streaming handlers (reflection, health Watch): the same refusal for a message that does not decode."""

    async def refuse(request: UndecodableRequest, context: grpc.aio.ServicerContext) -> None:
        error = _refuse_undecodable(request, method)
        await context.abort(error.code, error.message, error.trailing_metadata())

    async def guarded(requests, context):  # type: ignore[no-untyped-def]
        async for request in requests:
            if isinstance(request, UndecodableRequest):
                await refuse(request, context)
            yield request

    kwargs = {
        "request_deserializer": tolerant_deserializer(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    # Keep each behaviour's style: an async generator yields responses, a coroutine writes them
    # with context.write (health Watch) — grpc aio treats the two differently.
    if handler.unary_stream is not None:
        unary_stream = handler.unary_stream
        if inspect.isasyncgenfunction(unary_stream):

            async def one_in_yielding(request, context):  # type: ignore[no-untyped-def]
                if isinstance(request, UndecodableRequest):
                    await refuse(request, context)
                async for response in unary_stream(request, context):
                    yield response

            return grpc.unary_stream_rpc_method_handler(one_in_yielding, **kwargs)

        async def one_in_writing(request, context):  # type: ignore[no-untyped-def]
            if isinstance(request, UndecodableRequest):
                await refuse(request, context)
            await unary_stream(request, context)

        return grpc.unary_stream_rpc_method_handler(one_in_writing, **kwargs)
    if handler.stream_stream is not None:
        stream_stream = handler.stream_stream
        if inspect.isasyncgenfunction(stream_stream):

            async def many_in_yielding(requests, context):  # type: ignore[no-untyped-def]
                async for response in stream_stream(guarded(requests, context), context):
                    yield response

            return grpc.stream_stream_rpc_method_handler(many_in_yielding, **kwargs)

        async def many_in_writing(requests, context):  # type: ignore[no-untyped-def]
            await stream_stream(guarded(requests, context), context)

        return grpc.stream_stream_rpc_method_handler(many_in_writing, **kwargs)
    stream_unary = handler.stream_unary

    async def many_to_one(requests, context):  # type: ignore[no-untyped-def]
        return await stream_unary(guarded(requests, context), context)

    return grpc.stream_unary_rpc_method_handler(many_to_one, **kwargs)


class GrpcServer:
    """One ``grpc.aio.Server`` with health, reflection and the platform interceptors."""

    def __init__(
        self,
        config: GrpcServerConfig,
        service_names: Sequence[str],
        register: Callable[[grpc.aio.Server], None],
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self.config = config
        self.service_names = list(service_names)
        options = [
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        # Outermost first: the correlation id is known before telemetry starts the server span,
        # and domain errors are mapped to statuses before telemetry and auth see the outcome.
        chain = [correlation.CorrelationInterceptor(), *interceptors, ErrorMappingInterceptor()]
        self.server = grpc.aio.server(interceptors=chain, options=options)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        register(self.server)
        enable_reflection(
            [*self.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name], self.server
        )
        self.port = 0

    async def start(self) -> int:
        """Bind and start; health stays NOT_SERVING until :meth:`set_serving`."""
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        address = f"{self.config.host}:{self.config.port}"
        credentials = server_credentials(self.config.tls)
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)
        if self.port == 0:
            raise OSError(f"could not bind gRPC server to {address}")
        await self.server.start()
        return self.port

    async def set_serving(self) -> None:
        await self._set_all(health_pb2.HealthCheckResponse.SERVING)

    async def stop(self) -> None:
        """Report NOT_SERVING first so balancers stop sending, then drain in-flight calls."""
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(self.config.grace_seconds)

    async def _set_all(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in ["", *self.service_names]:
            await self.health.set(name, status)


async def wait_for_stop_signal() -> None:
    """Return on SIGTERM or SIGINT (the handlers are removed again afterwards)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


class ServiceApp(Protocol):
    async def start(self) -> int: ...

    async def stop(self) -> None: ...


async def run_until_stopped(app: ServiceApp, telemetry: Telemetry, metrics_port: int) -> None:
    """The process life of a service: start, serve /metrics, wait for SIGTERM/SIGINT, drain,
    and flush telemetry last so the drain's own spans and logs are exported too."""
    try:
        await app.start()
        telemetry.start_metrics_server(metrics_port)
        await wait_for_stop_signal()
        log.info("stop signal received; draining")
        await app.stop()
    finally:
        telemetry.shutdown()
