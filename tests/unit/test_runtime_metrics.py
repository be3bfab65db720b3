"""The runtime gauges (asyncio tasks, Python threads, pool checkouts) move with the real thing."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client import CollectorRegistry

from sagascope.common.telemetry import Telemetry, TelemetrySettings
from sagascope.common.telemetry.metrics import create_metrics
from sagascope.common.telemetry.runtime_metrics import thread_kind
from sagascope.order.database import create_engine


async def scrape(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float | None:
    """Read a sample the way /metrics does: from another thread than the loop's."""
    return await asyncio.to_thread(registry.get_sample_value, name, labels or {})


async def test_asyncio_tasks_counts_the_loops_unfinished_tasks() -> None:
    metrics = create_metrics()
    metrics.runtime.watch_loop(asyncio.get_running_loop())
    before = await scrape(metrics.registry, "python_asyncio_tasks")
    assert before is not None and before >= 1  # this test's own task
    release = asyncio.Event()
    waiting = [asyncio.create_task(release.wait()) for _ in range(7)]
    await asyncio.sleep(0)
    assert await scrape(metrics.registry, "python_asyncio_tasks") == before + 7
    release.set()
    await asyncio.gather(*waiting)
    assert await scrape(metrics.registry, "python_asyncio_tasks") == before


async def test_sqlalchemy_pool_checkouts_follow_open_connections(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    telemetry = Telemetry("test", TelemetrySettings(enabled=False))
    telemetry.instrument_sqlalchemy(engine)  # registers the pool gauge even with telemetry off
    labels = {"pool": "sqlalchemy"}
    try:
        assert await scrape(telemetry.metrics.registry, "db_client_connections_checked_out", labels) == 0
        async with engine.connect(), engine.connect():
            assert await scrape(telemetry.metrics.registry, "db_client_connections_checked_out", labels) == 2
        assert await scrape(telemetry.metrics.registry, "db_client_connections_checked_out", labels) == 0
        await engine.dispose()  # a new pool behind the engine: still read, still right
        async with engine.connect():
            assert await scrape(telemetry.metrics.registry, "db_client_connections_checked_out", labels) == 1
    finally:
        await engine.dispose()


def test_thread_kind_takes_the_pool_number_out() -> None:
    assert thread_kind("uvloop_3") == "uvloop"
    assert thread_kind("asyncio_0") == "asyncio"
    assert thread_kind("ThreadPoolExecutor-0_1") == "ThreadPoolExecutor"
    assert thread_kind("Thread-2 (serve_forever)") == "Thread (serve_forever)"
    assert thread_kind("OtelBatchSpanRecordProcessor") == "OtelBatchSpanRecordProcessor"
    assert thread_kind("MainThread") == "MainThread"


async def test_python_threads_counts_a_pool_that_grows() -> None:
    metrics = create_metrics()
    labels = {"name": "soak-probe"}
    assert await scrape(metrics.registry, "python_threads", labels) is None
    release = threading.Event()
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="soak-probe") as pool:
        for _ in range(3):
            pool.submit(release.wait)
        assert await scrape(metrics.registry, "python_threads", labels) == 3
        release.set()
    assert await scrape(metrics.registry, "python_threads", {"name": "MainThread"}) == 1
