"""The soak's sampler reads real figures: /proc of a live process, a real /metrics endpoint."""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.soak.sampler import PYTHON_KIND, proc_figures, scrape, thread_kinds
from sagascope.common.telemetry.metrics import MetricsServer, create_metrics
from sagascope.local.supervisor import free_port


def test_proc_figures_count_an_opened_descriptor(tmp_path: Path) -> None:
    before = proc_figures([os.getpid()])
    assert before is not None
    with (tmp_path / "held").open("w"):
        during = proc_figures([os.getpid()])
    assert during is not None and during[1] == before[1] + 1
    assert before[0] > 10 and before[2] >= 1  # MB of RSS, threads
    assert proc_figures([2**22 + 12345]) is None  # a pid that does not exist: no figures, no error


async def test_scrape_reads_tasks_and_pool_checkouts_from_metrics() -> None:
    metrics = create_metrics()
    metrics.runtime.watch_loop(asyncio.get_running_loop())
    metrics.runtime.pools.add("sqlalchemy", lambda: 3)
    server = MetricsServer(metrics.registry, "127.0.0.1", free_port())
    try:
        release = asyncio.Event()
        waiting = [asyncio.create_task(release.wait()) for _ in range(4)]
        await asyncio.sleep(0)
        scraped = await asyncio.to_thread(scrape, server.port)
        release.set()
        await asyncio.gather(*waiting)
    finally:
        server.close()
    assert scraped.tasks is not None and scraped.tasks >= 5  # this test's task and the four waiting
    assert scraped.checkouts == {"sqlalchemy": 3.0}
    assert scraped.threads["MainThread"] == 1 and scraped.threads["Thread (serve_forever)"] >= 1


def test_thread_kinds_name_python_threads_from_metrics_and_the_rest_from_proc() -> None:
    release = threading.Event()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="probe") as pool:
        for _ in range(2):
            pool.submit(release.wait)
        native = thread_kinds(os.getpid(), {})
        python = {"MainThread": 1.0, "probe": 2.0}
        named = thread_kinds(os.getpid(), python)
        release.set()
    own = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    assert native[own] >= 3  # in /proc every Python thread (main, two probes) has the process's name
    assert own not in named  # ... so with /metrics' names given, those take its place
    assert named[PYTHON_KIND + "probe"] == 2 and named[PYTHON_KIND + "MainThread"] == 1
