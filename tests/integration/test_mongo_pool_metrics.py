"""db_client_connections_checked_out{pool="pymongo"} counts the payment client's real checkouts (nx-27017)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from pymongo import monitoring

from sagascope.common.telemetry import Telemetry, TelemetrySettings
from sagascope.common.telemetry.mongo_pool import MongoCheckoutCounter
from sagascope.payment.store import connect
from tests.support.mongo import running_nx27017

LABELS = {"pool": "pymongo"}


class GaugeAtCheckout(MongoCheckoutCounter):
    """Registered after the counter: records what /metrics says at each checkout."""

    def __init__(self, read: Callable[[], float | None]) -> None:
        super().__init__()
        self.read = read
        self.seen: list[float | None] = []

    def connection_checked_out(self, event: monitoring.ConnectionCheckedOutEvent) -> None:
        self.seen.append(self.read())


async def test_pymongo_checkouts_rise_with_concurrent_operations_and_return_to_zero(tmp_path: Path) -> None:
    telemetry = Telemetry("test", TelemetrySettings(enabled=False))
    registry = telemetry.metrics.registry
    spy = GaugeAtCheckout(lambda: registry.get_sample_value("db_client_connections_checked_out", LABELS))
    async with running_nx27017(tmp_path) as url:
        client = connect(url, event_listeners=[telemetry.mongo_pool_listener(), spy])
        try:
            await client.admin.command("ping")
            assert registry.get_sample_value("db_client_connections_checked_out", LABELS) == 0
            collection = client["pool"]["docs"]
            await asyncio.gather(*(collection.insert_one({"n": n}) for n in range(30)))
            assert registry.get_sample_value("db_client_connections_checked_out", LABELS) == 0
        finally:
            await client.close()
    # Every checkout saw itself counted, and several were out at once.
    assert spy.seen and min(v or 0 for v in spy.seen) >= 1
    assert max(v or 0 for v in spy.seen) >= 2


class OpenConnections(MongoCheckoutCounter):
    """Connections created minus closed: what the payment process holds as sockets (the rest of
    the listener interface comes from the service's own counter)."""

    def __init__(self) -> None:
        super().__init__()
        self.open = 0
        self.closed_idle = 0
        self.none_open = asyncio.Event()  # PyMongo's async pool calls listeners on the event loop

    def connection_created(self, event: monitoring.ConnectionCreatedEvent) -> None:
        self.open += 1

    def connection_closed(self, event: monitoring.ConnectionClosedEvent) -> None:
        self.open -= 1
        self.closed_idle += event.reason == monitoring.ConnectionClosedReason.IDLE
        if self.open == 0:
            self.none_open.set()


async def test_the_connections_a_burst_opened_are_closed_once_idle(tmp_path: Path) -> None:
    """PAYMENT_MONGO_MAX_IDLE_SECONDS: without it PyMongo keeps a burst's connections for good (the
    60-minute soak saw payment's descriptors end 39 higher after two latency spikes)."""
    listener = OpenConnections()
    async with running_nx27017(tmp_path) as url:
        client = connect(url, max_idle_ms=500, event_listeners=[listener])
        try:
            collection = client["pool"]["docs"]
            await asyncio.gather(*(collection.insert_one({"n": n}) for n in range(30)))
            burst = listener.open
            assert burst >= 3
            await asyncio.wait_for(listener.none_open.wait(), timeout=15)
            assert listener.open == 0 and listener.closed_idle >= burst  # all of them, as idle
            await collection.insert_one({"n": 30})  # and the pool still serves
        finally:
            await client.close()
