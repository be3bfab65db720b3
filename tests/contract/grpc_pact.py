"""gRPC contracts as Pact V4 synchronous messages, because the pact protobuf plugin cannot be had here.

The Pact protobuf/gRPC plugin is downloaded from GitHub when a test first uses
it, and GitHub is out of reach on this machine and in CI. The nearest real
thing, used here:

- one gRPC call = one V4 *synchronous message* interaction;
- the request and response contents are the protobuf messages in their
  canonical proto3 JSON form (``google.protobuf.json_format``: lowerCamelCase
  names, int64 as strings, enums by name), content type ``application/json``;
- request metadata ``grpc-method`` names the full method
  (``/sagascope.payments.v1.PaymentService/ProcessPayment``); response metadata
  ``grpc-status`` carries the status code name (``OK``, ``NOT_FOUND``, ...),
  the way the protobuf plugin records gRPC status.

Consumer side: :class:`PactGrpcStub` is a real gRPC server built from the
pact's own interactions (the part the plugin's mock server would play). The
consumer's real code calls it over a socket; the stub checks each request it
receives against the interaction's request and answers with the interaction's
response (or aborts with its status).

Provider side: :func:`provider_message_handler` feeds each interaction's
request into the real service over a real gRPC channel and returns the reply
in the same JSON form, for pact's Verifier to match against the contract.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

# pact-python reports anonymous usage to an outside host unless told not to; keep runs offline.
os.environ.setdefault("PACT_DO_NOT_TRACK", "true")

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from pact import Pact
from pact.match import AbstractMatcher

# Import the generated modules so their descriptors are in the default pool.
from sagascope.api.identity.v1 import identity_pb2  # noqa: F401
from sagascope.api.orders.v1 import orders_pb2  # noqa: F401
from sagascope.api.payments.v1 import payments_pb2  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]
# The committed pact files (docs/testing.md, "Pact files"). Consumer tests rewrite them; provider tests verify them.
PACT_DIR = Path(os.environ.get("SAGASCOPE_PACT_DIR", REPO_ROOT / "pacts"))
CONTENT_TYPE = "application/json"
METHOD_KEY = "grpc-method"
STATUS_KEY = "grpc-status"

T = TypeVar("T")


def to_json(message: Message) -> dict[str, Any]:
    """The canonical proto3 JSON form of a message (what the pact files hold)."""
    return json_format.MessageToDict(message)


@dataclass(frozen=True)
class MethodTypes:
    path: str  # "/pkg.Service/Method"
    request: type[Message]
    response: type[Message]


def method_types(path: str) -> MethodTypes:
    """Request and response classes of ``/pkg.Service/Method``, from the generated descriptors."""
    service, _, method = path.strip("/").partition("/")
    descriptor = descriptor_pool.Default().FindMethodByName(f"{service}.{method}")
    return MethodTypes(
        path,
        message_factory.GetMessageClass(descriptor.input_type),
        message_factory.GetMessageClass(descriptor.output_type),
    )


def grpc_interaction(
    pact: Pact,
    description: str,
    *,
    method: str,
    request: Message,
    response: Mapping[str, Any] | None = None,
    status: grpc.StatusCode = grpc.StatusCode.OK,
    states: Sequence[tuple[str, Mapping[str, Any]]] = (),
) -> None:
    """Add one gRPC call as a synchronous message: request JSON in, response JSON (with matchers) out."""
    types = method_types(method)
    if not isinstance(request, types.request):
        raise TypeError(f"{method} takes {types.request.__name__}, not {type(request).__name__}")
    interaction = pact.upon_receiving(description, "Sync")
    for name, params in states:
        interaction.given(name, dict(params)) if params else interaction.given(name)
    interaction.with_body(json.dumps(to_json(request)), CONTENT_TYPE, part="Request")
    interaction.with_metadata({METHOD_KEY: method}, "Request")
    interaction.with_body(response or {}, CONTENT_TYPE, part="Response")
    interaction.with_metadata({STATUS_KEY: status.name}, "Response")


# --- consumer side -------------------------------------------------------------------------------


@dataclass
class _Expectation:
    description: str
    method: str
    request: dict[str, Any]
    response: dict[str, Any]
    status: grpc.StatusCode
    calls: int = 0


@dataclass
class PactGrpcStub:
    """A real gRPC server answering from a pact's synchronous message interactions."""

    pact: Pact
    # Serve only this interaction (a test exercises one at a time); None: all of them.
    only: str | None = None
    expectations: list[_Expectation] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    _server: grpc.aio.Server | None = None
    port: int = 0

    def __post_init__(self) -> None:
        for message in self.pact.interactions("Sync"):
            if self.only is not None and message.description != self.only:
                continue
            request = message.request_contents
            metadata = {pair.key: _json_or_str(pair.value) for pair in request.metadata}
            (response,) = list(message.response_contents)
            response_metadata = {pair.key: _json_or_str(pair.value) for pair in response.metadata}
            self.expectations.append(
                _Expectation(
                    description=message.description,
                    method=str(metadata[METHOD_KEY]),
                    request=json.loads(request.contents or "{}"),
                    response=json.loads(response.contents or "{}"),
                    status=grpc.StatusCode[str(response_metadata[STATUS_KEY])],
                )
            )
        if not self.expectations:
            raise LookupError(f"the pact has no synchronous message interaction {self.only!r}")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> PactGrpcStub:
        server = grpc.aio.server()
        by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        for path in {e.method for e in self.expectations}:
            service, _, name = path.strip("/").partition("/")
            types = method_types(path)
            by_service.setdefault(service, {})[name] = grpc.unary_unary_rpc_method_handler(
                self._handler(path, types),
                request_deserializer=types.request.FromString,
                response_serializer=types.response.SerializeToString,
            )
        for service, handlers in by_service.items():
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await self._server.stop(None)

    def _handler(
        self, path: str, types: MethodTypes
    ) -> Callable[[Message, grpc.aio.ServicerContext], Awaitable[Message]]:
        async def handle(request: Message, context: grpc.aio.ServicerContext) -> Message:
            actual = to_json(request)
            for expectation in self.expectations:
                if expectation.method == path and expectation.request == actual:
                    expectation.calls += 1
                    if expectation.status is not grpc.StatusCode.OK:
                        await context.abort(expectation.status, f"pact: {expectation.description}")
                    return json_format.ParseDict(expectation.response, types.response())
            self.mismatches.append(f"{path}: no interaction expects request {actual}")
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "pact: no interaction matches this request")
            raise AssertionError("unreachable")  # abort raises

        return handle

    def assert_all_called(self) -> None:
        assert not self.mismatches, self.mismatches
        missed = [e.description for e in self.expectations if e.calls == 0]
        assert not missed, f"interactions the consumer never exercised: {missed}"


def _json_or_str(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


# --- provider side -------------------------------------------------------------------------------


class BackgroundLoop:
    """An asyncio loop in a thread: pact's Verifier is synchronous and calls handlers from its own threads."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="provider-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def provider_message_handler(
    loop: BackgroundLoop,
    channel: Callable[[], grpc.aio.Channel],
    call_metadata: Callable[[], Sequence[tuple[str, str]]],
) -> Callable[[str, dict[str, Any] | None], dict[str, Any]]:
    """A Verifier message handler: send the interaction's request to the real provider, return its reply."""

    # pact-python passes arguments by name: the parameters must be called name and metadata.
    def handler(name: str, metadata: dict[str, Any] | None) -> dict[str, Any]:
        request_part = (metadata or {}).get("request") or {}
        method = str((request_part.get("metadata") or {})[METHOD_KEY])
        contents = (request_part.get("contents") or {}).get("content") or {}
        if isinstance(contents, str):
            contents = json.loads(contents)
        types = method_types(method)
        request = json_format.ParseDict(contents, types.request())

        async def call() -> tuple[grpc.StatusCode, dict[str, Any]]:
            rpc = channel().unary_unary(
                method,
                request_serializer=types.request.SerializeToString,
                response_deserializer=types.response.FromString,
            )
            try:
                reply = await rpc(request, metadata=tuple(call_metadata()), timeout=10)
            except grpc.aio.AioRpcError as exc:
                return exc.code(), {}
            return grpc.StatusCode.OK, to_json(reply)

        code, body = loop.run(call())
        return {
            "contents": json.dumps(body).encode(),
            "metadata": {STATUS_KEY: code.name},
            "content_type": CONTENT_TYPE,
        }

    return handler


__all__ = [
    "PACT_DIR",
    "AbstractMatcher",
    "BackgroundLoop",
    "PactGrpcStub",
    "grpc_interaction",
    "method_types",
    "provider_message_handler",
    "to_json",
]


def verify_all(verifier: Any, pact_file: Path) -> str:
    """Run a provider verification and return its report, checking every interaction appears.

    The report is printed even when verification fails, so the mismatch is in the test output.
    """
    expected = [i["description"] for i in json.loads(pact_file.read_text())["interactions"]]
    try:
        verifier.verify()
    finally:
        output = str(verifier.output(strip_ansi=True))
        print(output)
    for description in expected:
        assert description in output
    return output
