"""The soak's load: an open loop (requests start on a fixed schedule, whatever the replies do) with a
mix of sagas that complete and sagas that are compensated.

Open, not closed: a closed loop slows down when the service does, which hides exactly the drift a
soak looks for. In-flight requests are bounded (``max_in_flight``); a slot that finds the bound
reached is *dropped* and counted, and a request that starts more than ``LATE_S`` after its slot
(this client's loop fell behind) is counted as *late*. Latency is measured from the moment the
request was sent to its reply.

The mix (seeded): ~87 % plain orders that complete; the rest are compensated by asking — the
``x-sagascope-fault`` header (the stack runs with SAGASCOPE_FAULTS_ENABLED=true) for a payment
decline or a failed confirm (charge refunded), or a total above the payment limit (declined by
rule). Each kind has one expected outcome; any other reply is an error the soak fails on.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from sagascope.api.orders.v1 import orders_pb2
from sagascope.cli.client import order_request
from sagascope.common.faults import Fault
from tools.chaos.workload import OVER_LIMIT_MINOR, Clients

LATE_S = 0.1
COMPLETED = orders_pb2.OrderStatus.Name(orders_pb2.ORDER_STATUS_COMPLETED)
CANCELLED = orders_pb2.OrderStatus.Name(orders_pb2.ORDER_STATUS_CANCELLED)


@dataclass(frozen=True)
class Kind:
    name: str
    share: float
    faults: tuple[str, ...] = ()
    amount_minor: int = 4999
    expect: str = COMPLETED


COMPENSATED_KINDS = (
    Kind("payment declined (fault)", 0.05, (Fault.PAYMENT_DECLINE.value,), expect=CANCELLED),
    Kind("confirm failed, refunded (fault)", 0.05, (Fault.CONFIRM_FAILURE.value,), expect=CANCELLED),
    Kind("over the payment limit", 0.03, amount_minor=OVER_LIMIT_MINOR, expect=CANCELLED),
)
PLAIN = Kind("completed", 1 - sum(kind.share for kind in COMPENSATED_KINDS))
KINDS = (PLAIN, *COMPENSATED_KINDS)


def pick(rng: random.Random) -> Kind:
    return rng.choices(KINDS, weights=[kind.share for kind in KINDS])[0]


@dataclass(slots=True)
class Reply:
    sent_s: float  # on the steady phase's clock
    latency_ms: float
    kind: str
    outcome: str  # the order status, or the gRPC code when there was no order
    expected: bool


@dataclass
class OpenLoop:
    clients: Clients
    rate: float  # requests per second
    started: float  # time.monotonic() of the steady phase's start
    max_in_flight: int = 256
    timeout_s: float = 30.0
    seed: int = 21
    replies: list[Reply] = field(default_factory=list)
    answered: list[int] = field(default_factory=lambda: [0])  # a cell the sampler reads live
    scheduled: int = 0
    dropped: int = 0
    late: int = 0
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)

    async def _one(self, index: int, kind: Kind, run: str) -> None:
        customer = ("alice", "bob")[index % 2]
        request = order_request(customer, f"soak-{run}-{index}", amount_minor=kind.amount_minor)
        sent = time.monotonic()
        try:
            result = await self.clients.pick(customer, index).create_order(
                request, inject=kind.faults, timeout=self.timeout_s)
        except Exception as exc:  # not a gRPC status (those are in the result): counted, never lost
            outcome, latency_s = type(exc).__name__, time.monotonic() - sent
        else:
            order = result.order
            outcome = orders_pb2.OrderStatus.Name(order.status) if order is not None else result.code.name
            latency_s = result.elapsed_s
        self.replies.append(Reply(sent - self.started, latency_s * 1000, kind.name, outcome, outcome == kind.expect))
        self.outcomes[(kind.name, outcome)] += 1
        self.answered[0] += 1

    async def run(self, seconds: float) -> None:
        """Schedule ``rate`` requests per second for ``seconds``, then wait for the last replies."""
        rng = random.Random(f"soak:{self.seed}")
        run = uuid.uuid4().hex[:8]
        in_flight: set[asyncio.Task[None]] = set()
        period = 1 / self.rate
        end = self.started + seconds
        while True:
            slot = self.started + self.scheduled * period
            if slot >= end:
                break
            now = time.monotonic()
            if slot > now:
                await asyncio.sleep(slot - now)
            elif now - slot > LATE_S:
                self.late += 1
            kind = pick(rng)
            self.scheduled += 1
            if len(in_flight) >= self.max_in_flight:
                self.dropped += 1
                continue
            task = asyncio.create_task(self._one(self.scheduled, kind, run))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight, timeout=self.timeout_s + 5)
