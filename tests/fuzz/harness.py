"""The fuzz tier's harness: the three services in-process on real sockets (identity, payment on
nx-27017, order on SQLite), run on an event loop in a background thread so hypothesis can drive
them from plain synchronous tests; the checks every answer must pass; a tally for the summary.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, settings

from sagascope.api.admin.v1 import admin_pb2
from sagascope.api.identity.v1 import identity_pb2
from sagascope.api.orders.v1 import orders_pb2
from sagascope.api.payments.v1 import payments_pb2
from sagascope.identity.throttle import ThrottleSettings
from tests.support.identity import DEMO_PASSWORDS
from tests.support.order_stack import OrderStack, request, running_order_stack
from tests.support.raw_grpc import field_violations

# `make test` runs a fixed seed and a small budget; `make fuzz` raises FUZZ_EXAMPLES.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
settings.register_profile(
    "sagascope",
    max_examples=EXAMPLES,
    derandomize=os.environ.get("FUZZ_RANDOM") != "1",
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("sagascope")

FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS}
CALL_TIMEOUT = 20.0
# Fuzzing logs in hundreds of times from one address; throttling has its own tests.
UNTHROTTLED = ThrottleSettings(per_username="100000/minute", per_address="100000/minute", max_concurrent_hashes=4,
                               hash_wait_seconds=5.0)  # fmt: skip

SERVICES = {
    "identity": identity_pb2.DESCRIPTOR.services_by_name["IdentityService"],
    "payment": payments_pb2.DESCRIPTOR.services_by_name["PaymentService"],
    "order": orders_pb2.DESCRIPTOR.services_by_name["OrderService"],
    # The saga admin API, served by the order service; called as the demo admin (sagas.read + operate).
    "admin": admin_pb2.DESCRIPTOR.services_by_name["SagaAdminService"],
}


def every_method() -> list[tuple[str, MethodDescriptor]]:
    return [(name, method) for name, service in SERVICES.items() for method in service.methods]


def method_path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def message_class(full_name: str) -> Any:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor_pool.Default().FindMessageTypeByName(full_name))


@dataclass
class Tally:
    """Examples run and status codes seen, per RPC (printed by `make fuzz`)."""

    codes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, rpc: str, code: str) -> None:
        self.codes[rpc][code] += 1

    def render(self) -> str:
        lines = ["fuzz summary (examples run per RPC, statuses seen):"]
        for rpc in sorted(self.codes):
            seen = ", ".join(f"{code} {n}" for code, n in self.codes[rpc].most_common())
            lines.append(f"  {rpc:<62} {sum(self.codes[rpc].values()):>5}  {seen}")
        return "\n".join(lines)


TALLY = Tally()


class LogCapture(logging.Handler):
    """Every record the in-process services write, as the text any formatter could print of it."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.getMessage()} {record.__dict__!r}"
        with self._lock2:
            self.lines.append(text)

    def mark(self) -> int:
        with self._lock2:
            return len(self.lines)

    def containing(self, secret: str, since: int = 0) -> list[str]:
        """Lines holding ``secret``, among those written after ``since`` (a :meth:`mark`)."""
        with self._lock2:
            return [line for line in self.lines[since:] if secret in line]


class Services:
    """The stack on its own loop thread; synchronous channels to each service."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-services", daemon=True)
        self.thread.start()
        self._context = running_order_stack(
            tmp_path, f"sqlite:///{tmp_path / 'orders.db'}", identity_throttle=UNTHROTTLED
        )
        self.stack: OrderStack = self._run(self._context.__aenter__())
        self.service_token = self._run(
            self.stack.identity.login("order-service", DEMO_PASSWORDS["order-service"])
        )
        self.targets = {
            "identity": self.stack.identity.grpc_target,
            "payment": f"127.0.0.1:{self.stack.payment_settings.grpc_port}",
            "order": f"127.0.0.1:{self.stack.order.port}",
            "admin": f"127.0.0.1:{self.stack.order.port}",
        }
        self.channels = {name: grpc.insecure_channel(target) for name, target in self.targets.items()}
        self.http_url = self.stack.identity.http_url
        self.secrets = [*DEMO_PASSWORDS.values(), *self.stack.tokens.values(), self.service_token]

    def _run(self, coroutine: Any, timeout: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def metadata(self, service: str) -> tuple[tuple[str, str], ...]:
        token = {"identity": None, "payment": self.service_token, "order": self.stack.tokens["admin"],
                 "admin": self.stack.tokens["admin"]}[service]
        return (("authorization", f"Bearer {token}"),) if token else ()

    def call(self, service: str, method: MethodDescriptor, payload: bytes) -> grpc.StatusCode:
        """Send raw request bytes; check the answer against the invariants; return its code."""
        rpc = method_path(method)
        try:
            self.channels[service].unary_unary(rpc)(payload, metadata=self.metadata(service), timeout=CALL_TIMEOUT)
            code = grpc.StatusCode.OK
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            check_refusal(rpc, error)
        TALLY.add(rpc, code.name)
        return code

    def assert_healthy(self) -> None:
        """Every service SERVING, and each still answers a valid request."""
        for name, channel in self.channels.items():
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
        from sagascope.api.identity.v1 import identity_pb2_grpc
        from sagascope.api.orders.v1 import orders_pb2_grpc
        from sagascope.api.payments.v1 import payments_pb2_grpc

        login = identity_pb2_grpc.IdentityServiceStub(self.channels["identity"]).Login(
            identity_pb2.LoginRequest(username="bob", password=DEMO_PASSWORDS["bob"]), timeout=10
        )
        assert login.access_token
        self.secrets.append(login.access_token)
        payments = payments_pb2_grpc.PaymentServiceStub(self.channels["payment"])
        charged = payments.ProcessPayment(
            payments_pb2.ProcessPaymentRequest(
                order_id="fuzz-check", amount_minor=100, currency="EUR", idempotency_key="fuzz-check"
            ),
            metadata=self.metadata("payment"),
            timeout=10,
        )
        assert charged.payment.id
        orders = orders_pb2_grpc.OrderServiceStub(self.channels["order"])
        listed = orders.ListOrders(
            orders_pb2.ListOrdersRequest(page_size=1), metadata=self.metadata("order"), timeout=10
        )
        assert listed is not None
        created = orders.CreateOrder(request("fuzz-health-check"), metadata=self.metadata("order"), timeout=20)
        assert created.order.id

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
        try:
            self._run(self._context.__aexit__(None, None, None), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)


def check_refusal(rpc: str, error: grpc.RpcError) -> None:
    code = error.code()  # type: ignore[attr-defined]
    details = error.details() or ""  # type: ignore[attr-defined]
    assert code not in FORBIDDEN, f"{rpc} answered {code.name}: {details}"
    assert code != grpc.StatusCode.UNIMPLEMENTED, f"{rpc} answered UNIMPLEMENTED: {details}"
    assert "Traceback" not in details and "<class" not in details, details
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        violations = field_violations(error)  # type: ignore[arg-type]
        assert violations and all(field for field, _ in violations), f"{rpc}: no field named in {details!r}"
        assert violations[0][0] in details, f"{rpc}: message {details!r} does not name {violations[0][0]!r}"
