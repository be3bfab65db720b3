"""Load for the order service, with gRPC users in locust's documented pattern (a client interceptor
that fires ``events.request`` for every call, on a gevent-friendly grpc).

    locust -f tests/load/locustfile.py --headless --host 127.0.0.1:50052 --scenario smoke \\
        --identity-target 127.0.0.1:50051
    (tests/load/run.py does this, then checks thresholds; see `make load-smoke`, `make load`)

The mix, per user task weights:
- 80% CreateOrder           — an ordinary order; with SAGASCOPE_FAULTS rates on the stack a share
                              of these is compensated (declined, or confirm failed -> refund)
- 15% GetOrder              — one of this user's orders
-  5% CreateOrder + refund  — the public API has no refund RPC for customers, so "refunds" are
                              orders sent with ``x-sagascope-fault: confirm_failure``: payment is
                              charged, confirm fails, the saga refunds (a RefundPayment compensation)

Scenarios (``--scenario``, one LoadTestShape): smoke (1 user, 30 s), load (ramp to a target rate and
hold), stress (add users in steps to find the knee), spike (baseline, sudden burst, recovery).

Outcomes the RPC status cannot show (COMPLETED / CANCELLED / FAILED per task) are written to
``--outcomes-file`` (JSON) when the test stops, for run.py's checks.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import LoadTestShape, User, events, task
from locust.exception import LocustError

from sagascope.api.identity.v1 import identity_pb2, identity_pb2_grpc
from sagascope.api.orders.v1 import orders_pb2, orders_pb2_grpc
from sagascope.local.topology import IDENTITY, address

grpc_gevent.init_gevent()  # grpc's own threads must cooperate with locust's gevent loop

FAULT_HEADER = "x-sagascope-fault"
OUTCOMES: Counter[str] = Counter()  # "<task>:<status>" -> count, for run.py


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--scenario", choices=["smoke", "load", "stress", "spike"], default="smoke")
    parser.add_argument(
        "--identity-target", default=address(IDENTITY.grpc.default), help="identity gRPC address (login)"
    )
    parser.add_argument("--username", default="alice")
    parser.add_argument("--password", default="alice-dev-password")
    parser.add_argument("--target-rps", type=float, default=100.0, help="load: requests/s to ramp to")
    parser.add_argument("--max-users", type=int, default=32, help="load/stress/spike: most users at once")
    parser.add_argument("--stage-seconds", type=int, default=20, help="stress: seconds per step")
    parser.add_argument("--hold-seconds", type=int, default=60, help="load: seconds at the target rate")
    parser.add_argument("--outcomes-file", default="", help="write saga outcomes here (JSON) at the end")


@events.test_stop.add_listener
def _write_outcomes(environment: Any, **_: Any) -> None:
    path = environment.parsed_options.outcomes_file
    if path:
        Path(path).write_text(json.dumps(dict(OUTCOMES), indent=2, sort_keys=True))


class LocustInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Report each call to locust: name = the RPC's short name (or the caller's override)."""

    def __init__(self, environment: Any) -> None:
        self.env = environment

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        response = None
        exception = None
        started = time.perf_counter()
        response_length = 0
        try:
            response = continuation(client_call_details, request)
            response_length = response.result().ByteSize()
        except grpc.RpcError as exc:
            exception = exc
        metadata = dict(client_call_details.metadata or ())
        name = metadata.get("x-load-name") or client_call_details.method.rsplit("/", 1)[-1]
        self.env.events.request.fire(
            request_type="grpc", name=name, response_time=(time.perf_counter() - started) * 1000,
            response_length=response_length, response=response, context=None, exception=exception,
        )
        return response


class GrpcUser(User):
    abstract = True
    stub_class: type | None = None

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        if self.host is None or self.stub_class is None:
            raise LocustError("GrpcUser needs --host (the order service's host:port) and a stub_class")
        channel = grpc.insecure_channel(self.host)
        self._channel = grpc.intercept_channel(channel, LocustInterceptor(environment))
        self.stub = self.stub_class(self._channel)

    def on_stop(self) -> None:
        self._channel.close()


_token_lock = threading.Lock()
_token: dict[str, tuple[str, float]] = {}


def access_token(identity_target: str, username: str, password: str) -> str:
    """One login per process, reused by every user until a minute before it expires (scrypt is costly)."""
    with _token_lock:
        cached = _token.get(username)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        with grpc.insecure_channel(identity_target) as channel:
            reply = identity_pb2_grpc.IdentityServiceStub(channel).Login(
                identity_pb2.LoginRequest(username=username, password=password), timeout=10
            )
        _token[username] = (reply.access_token, time.monotonic() + max(30, reply.expires_in - 60))
        return str(reply.access_token)


class OrderUser(GrpcUser):
    stub_class = orders_pb2_grpc.OrderServiceStub

    def wait_time(self) -> float:
        options = self.environment.parsed_options
        if options.scenario == "load":
            # Pacing: each user starts a task every max_users/target_rps seconds -> target_rps in total.
            return max(0.0, options.max_users / options.target_rps)
        if options.scenario == "smoke":
            return 0.2
        return 0.0  # stress and spike: as fast as the users can go

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.token = access_token(options.identity_target, options.username, options.password)
        self.orders: list[str] = []

    def _metadata(self, name: str, fault: str = "") -> tuple[tuple[str, str], ...]:
        md = [("authorization", f"Bearer {self.token}"), ("x-load-name", name)]
        if fault:
            md.append((FAULT_HEADER, fault))
        return tuple(md)

    def _create(self, name: str, fault: str = "") -> None:
        request = orders_pb2.CreateOrderRequest(
            customer_id=self.environment.parsed_options.username, currency="EUR",
            idempotency_key=f"load-{uuid.uuid4().hex}",
            items=[orders_pb2.OrderItem(sku="SKU-LOAD-1", quantity=1, unit_price_minor=4999)],
        )
        try:
            reply = self.stub.CreateOrder(request, metadata=self._metadata(name, fault), timeout=30)
        except grpc.RpcError as exc:
            OUTCOMES[f"{name}:{exc.code().name}"] += 1  # type: ignore[attr-defined]
            return
        status = orders_pb2.OrderStatus.Name(reply.order.status).removeprefix("ORDER_STATUS_")
        OUTCOMES[f"{name}:{status}"] += 1
        if len(self.orders) < 100:
            self.orders.append(reply.order.id)

    @task(80)
    def create_order(self) -> None:
        self._create("CreateOrder")

    @task(15)
    def get_order(self) -> None:
        if not self.orders:
            self._create("CreateOrder")
            return
        order_id = self.orders[int(time.monotonic() * 1000) % len(self.orders)]
        try:
            self.stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id),
                               metadata=self._metadata("GetOrder"), timeout=10)
        except grpc.RpcError as exc:
            OUTCOMES[f"GetOrder:{exc.code().name}"] += 1  # type: ignore[attr-defined]

    @task(5)
    def refunded_order(self) -> None:
        # No customer refund RPC exists: confirm_failure makes the saga refund the charge it made.
        self._create("CreateOrder+refund", fault="confirm_failure")


class ScenarioShape(LoadTestShape):
    """smoke | load | stress | spike, chosen with --scenario; each ends by itself."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options
        t = self.get_run_time()
        top = max(1, options.max_users)
        if options.scenario == "smoke":
            return (1, 1) if t < 30 else None
        if options.scenario == "load":
            ramp = 30
            if t < ramp:
                return max(1, round(top * t / ramp)), top / ramp
            return (top, top) if t < ramp + options.hold_seconds else None
        if options.scenario == "stress":
            step = max(1, top // 6)
            stage = int(t // options.stage_seconds)
            users = step * (stage + 1)
            return (min(users, top), step) if users <= top else None
        if options.scenario == "spike":
            base = max(1, top // 8)
            if t < 30:
                return base, base
            if t < 50:
                return top, top  # the spike: everyone at once
            return (base, top) if t < 80 else None
        raise LocustError(f"unknown scenario {options.scenario}")
