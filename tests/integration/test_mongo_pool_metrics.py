"""db_client_connections_checked_out{pool="pymongo"} counts the payment client's real checkouts (nx-27017)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from pymongo import monitoring

from sagascope.common.telemetry import Telemetry, TelemetrySettings
from sagascope.common.telemetry.runtime_metrics import MongoCheckoutCounter
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
