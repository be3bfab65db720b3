"""The campaign's clients: a seeded plan of sagas, sent with duplicates and retries, every reply kept.

Each planned saga is one idempotency key. Most are sent once; some by several clients at the same
moment (concurrent duplicates, spread over both order replicas). Some ask for one of the services'
own faults (``x-sagascope-fault``), some exceed the payment limit (declined by rule). A client whose
call failed in a way that says nothing about the order (the connection dropped, the deadline
passed, an internal error) retries the same key, as a real client would; every reply it gets is
recorded for the auditor.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from sagascope.api.orders.v1 import orders_pb2
from sagascope.cli.client import OrderClient, login, order_request
from sagascope.common.faults import Fault

CUSTOMERS = {"alice": "alice-dev-password", "bob": "bob-dev-password"}
DUPLICATE_SHARE = 0.12  # keys sent by several clients at once
APP_FAULT_SHARE = 0.25  # sagas that ask for one of the services' own faults
OVER_LIMIT_SHARE = 0.04  # totals above PAYMENT_LIMIT_MAJOR: declined by the payment rule
OVER_LIMIT_MINOR = 150_000  # 1500.00 EUR, above the default limit of 1000
MAX_ATTEMPTS = 3  # per client, same key
# The server said what became of the order ("... cancelled ...; retry with a new idempotency_key"):
# retrying the same key would only replay that answer.
DEFINITE_MARK = "idempotency_key"
RETRY_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.UNAUTHENTICATED,  # JWKS not reachable while identity is down
        grpc.StatusCode.CANCELLED,
    }
)


@dataclass(frozen=True)
class SagaPlan:
    index: int
    customer: str
    key: str
    amount_minor: int
    quantity: int
    faults: tuple[str, ...]
    copies: int

    @property
    def total_minor(self) -> int:
        return self.amount_minor * self.quantity


@dataclass(frozen=True)
class ClientReply:
    """One reply one client got for one CreateOrder (``status`` is empty unless ``code`` is OK)."""

    index: int
    customer: str
    key: str
    copy: int
    attempt: int
    code: str
    order_id: str
    status: str
    message: str
    elapsed_s: float
    sent_s: float = 0.0  # when this attempt went out, on the campaign's clock (goodput windows)


def build_workload(seed: int, sagas: int) -> list[SagaPlan]:
    rng = random.Random(f"chaos-workload:{seed}")
    faults = [fault.value for fault in Fault]
    plans = []
    for index in range(sagas):
        customer = rng.choice(sorted(CUSTOMERS))
        if rng.random() < OVER_LIMIT_SHARE:
            amount, quantity = OVER_LIMIT_MINOR, 1
        else:
            amount, quantity = rng.randint(100, 30_000), rng.randint(1, 3)
        asked = (rng.choice(faults),) if rng.random() < APP_FAULT_SHARE else ()
        copies = rng.choice((2, 3, 4)) if rng.random() < DUPLICATE_SHARE else 1
        plans.append(SagaPlan(index, customer, f"chaos-{seed}-{index:05d}", amount, quantity, asked, copies))
    return plans


def should_retry(code: grpc.StatusCode, message: str) -> bool:
    return code in RETRY_CODES and DEFINITE_MARK not in message


class Clients:
    """A few round-robin channels per customer, over every order replica."""

    def __init__(self, order_target: str, tokens: dict[str, str], channels_per_customer: int = 3) -> None:
        self._clients = {
            customer: [OrderClient(order_target, token) for _ in range(channels_per_customer)]
            for customer, token in tokens.items()
        }

    @classmethod
    async def open(cls, order_target: str, identity_target: str) -> Clients:
        tokens = {user: await login(identity_target, user, password) for user, password in CUSTOMERS.items()}
        return cls(order_target, tokens)

    def pick(self, customer: str, n: int) -> OrderClient:
        channels = self._clients[customer]
        return channels[n % len(channels)]

    async def close(self) -> None:
        for channels in self._clients.values():
            for client in channels:
                await client.close()


async def send(plan: SagaPlan, copy: int, clients: Clients, timeout_s: float, replies: list[ClientReply],
               clock: Callable[[], float] = time.monotonic) -> None:
    """One client's tries for one key; every reply is appended to ``replies``."""
    request = order_request(plan.customer, plan.key, amount_minor=plan.amount_minor, quantity=plan.quantity)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        client = clients.pick(plan.customer, plan.index + copy + attempt)
        sent_s = clock()
        result = await client.create_order(request, inject=plan.faults, timeout=timeout_s)
        order = result.order
        replies.append(
            ClientReply(
                index=plan.index,
                customer=plan.customer,
                key=plan.key,
                copy=copy,
                attempt=attempt,
                code=result.code.name,
                order_id=order.id if order is not None else "",
                status=orders_pb2.OrderStatus.Name(order.status).removeprefix("ORDER_STATUS_") if order else "",
                message=result.message[:300],
                elapsed_s=round(result.elapsed_s, 3),
                sent_s=sent_s,
            )
        )
        if not should_retry(result.code, result.message):
            return
        await asyncio.sleep(0.3 * attempt)


async def run_workload(
    plans: list[SagaPlan],
    clients: Clients,
    concurrency: int,
    timeout_s: float,
    admit: Callable[[int], Awaitable[None]],
    progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[ClientReply]:
    """Issue the sagas in order, at most ``concurrency`` in flight; ``admit(i)`` is awaited before
    saga ``i`` is issued (the fault schedule holds the workload there until its fault started)."""
    replies: list[ClientReply] = []
    slots = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()

    async def one(plan: SagaPlan) -> None:
        try:
            await asyncio.gather(*(send(plan, copy, clients, timeout_s, replies, clock) for copy in range(plan.copies)))
        finally:
            slots.release()

    last_report = time.monotonic()
    for plan in plans:
        await admit(plan.index)
        await slots.acquire()
        task = asyncio.create_task(one(plan))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if progress is not None and time.monotonic() - last_report >= 10:
            last_report = time.monotonic()
            progress(plan.index + 1)
    await asyncio.gather(*list(tasks))
    return replies
