"""A storm of twice-cancelled store calls while MongoDB is away does not wedge the payment client.

On Python 3.11 such a storm left PyMongo's topology lock held by a finished task, and every later
operation of that client waited forever (payment/store.py's doc; the chaos campaign, seed 42 at 24
in flight, FINDINGS §6). Here the calls wait for a server that is not there yet, each is cancelled
twice at a random moment, as gRPC does to a handler whose deadline passed, and then nx-27017 starts
on that port: the same store must serve within a few seconds.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from sagascope.local.supervisor import free_port
from sagascope.payment import domain
from sagascope.payment.store import PaymentStore, connect
from tests.support.mongo import running_nx27017

CALLS = 40
ROUNDS = 4
T = TypeVar("T")


class Wedged(AssertionError):
    """The client did not answer at all: closing it would wait forever too."""


async def within(seconds: float, call: Awaitable[T]) -> T:
    """``call``'s result or exception, or :class:`Wedged` if it is still waiting after ``seconds``
    (``asyncio.wait``, not ``wait_for``: a wedged call would not even end when cancelled)."""
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        raise Wedged(f"a store call was still waiting after {seconds:g}s: the client is wedged")
    return task.result()


async def cancel_twice(task: asyncio.Task[object], rng: random.Random) -> None:
    await asyncio.sleep(rng.uniform(0.05, 0.4))
    task.cancel()
    for _ in range(rng.randint(0, 3)):  # the second cancel lands at a different point each time
        await asyncio.sleep(0)
    task.cancel()


async def storm(store: PaymentStore, rng: random.Random) -> None:
    """ROUNDS x CALLS store calls, each cancelled twice; every caller sees CancelledError at once."""
    for _ in range(ROUNDS):
        calls = [asyncio.create_task(store.find_by_idempotency_key(f"key-{n}")) for n in range(CALLS)]
        await asyncio.gather(*(cancel_twice(call, rng) for call in calls))
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes


async def scenario(tmp_path: Path, seed: int, wedged: list[str]) -> None:
    port = free_port()
    client = connect(f"mongodb://127.0.0.1:{port}/?directConnection=true", server_selection_timeout_ms=1500)
    store = PaymentStore.for_database(client, "payments")
    try:
        await storm(store, random.Random(seed))
        # Nobody there yet: a call fails after the selection timeout instead of waiting forever.
        with pytest.raises(ServerSelectionTimeoutError):
            await within(10, store.get("absent"))
        async with running_nx27017(tmp_path, port):
            charge = domain.ChargeRequest("ord_1", 1250, "EUR", "charge-key-1")
            payment = domain.new_payment(charge, domain.decide(charge, 1000), datetime.now(UTC))
            stored = await within(10, store.insert_or_get(payment))
            assert stored.id == payment.id
            found = await within(10, store.find_by_idempotency_key("charge-key-1"))
            assert found is not None and found.id == payment.id
    except Wedged as exc:
        wedged.append(str(exc))
        raise  # no close(): it would wait on the same lock
    await client.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_twice_cancelled_calls_while_mongo_is_away_leave_the_client_usable(tmp_path: Path, seed: int) -> None:
    # In a loop of its own on a daemon thread: a wedged client's tasks never finish, so the loop's
    # teardown would wait forever; the thread is left behind and the test fails instead.
    outcome: list[BaseException | None] = []
    wedged: list[str] = []

    def run() -> None:
        try:
            asyncio.run(scenario(tmp_path, seed, wedged))
            outcome.append(None)
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    thread = threading.Thread(target=run, name=f"store-cancellation-{seed}", daemon=True)
    thread.start()
    thread.join(60)
    if wedged or not outcome:
        pytest.fail(wedged[0] if wedged else "the scenario did not end within 60 s: a wedged client never answers")
    if outcome[0] is not None:
        raise outcome[0]
