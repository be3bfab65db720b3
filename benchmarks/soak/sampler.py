"""Every process of the stack, every 10 s: RSS, open descriptors, threads (from /proc), and from each
service's /metrics its asyncio tasks, Python threads by name and database pool checkouts
(sagascope's runtime gauges).

Threads are also counted by kind, so a count that grows says which pool grew: the threads C code
starts carry their own name in ``/proc/<pid>/task/*/comm`` (``event_engine`` for gRPC's pool,
``libuv-worker`` for uvloop's resolver); Python threads keep the process's name there, so for a
service those come from ``python_threads{name}`` instead.

PostgreSQL is one row: the postmaster and all its children (backends, autovacuum, WAL writer, ...)
summed, since the pool's connections are backends of their own. Its memory is the summed PSS
(proportional set size), not RSS: every backend maps the same shared buffers, and summing their
RSS would count those pages once per backend. nx-27017 (the MongoDB-wire server)
has no /metrics: /proc only.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families

from sagascope.local.services import LocalStack

POSTGRES = "postgres"
TASKS = "python_asyncio_tasks"
CHECKOUTS = "db_client_connections_checked_out"
THREADS = "python_threads"
PYTHON_KIND = "python "  # prefix of a Python thread's kind: "python uvloop"


@dataclass
class Sample:
    """One process at one moment; None where the process cannot say (no /metrics, gone)."""

    t: float  # seconds since the steady phase started (negative: during capacity measurement)
    sagas: int  # sagas answered so far in the steady phase
    process: str
    rss_mb: float | None
    fds: int | None
    threads: int | None
    tasks: float | None = None
    checkouts: dict[str, float] = field(default_factory=dict)
    thread_kinds: dict[str, float] = field(default_factory=dict)  # kind -> threads (see the module's doc)


@dataclass
class Scraped:
    """What one service's /metrics says about its own resources."""

    tasks: float | None = None
    checkouts: dict[str, float] = field(default_factory=dict)
    threads: dict[str, float] = field(default_factory=dict)  # Python threads by name


def proc_figures(pids: list[int], pss: bool = False) -> tuple[float, int, int] | None:
    """RSS (MB; PSS with ``pss``), open descriptors and threads of these processes, summed; None if
    all are gone."""
    rss = fds = threads = 0
    seen = False
    for pid in pids:
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                rss += process.memory_full_info().pss if pss else process.memory_info().rss
                threads += process.num_threads()
                fds += process.num_fds()
            seen = True
        except (psutil.Error, OSError):
            continue  # a backend that exited between listing and reading
    return (rss / 2**20, fds, threads) if seen else None


def native_thread_kinds(pid: int) -> Counter[str]:
    """The process's threads by their ``comm`` name, those named like the process itself included."""
    kinds: Counter[str] = Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kinds[(task / "comm").read_text().strip()] += 1
        except OSError:
            continue  # a thread that ended between listing and reading
    return kinds


def thread_kinds(pid: int, python_threads: dict[str, float]) -> dict[str, float]:
    """Native threads by comm name; the process's own name replaced by its Python threads' names when
    its /metrics gave them."""
    native = native_thread_kinds(pid)
    if python_threads:
        native.pop(Path(f"/proc/{pid}/comm").read_text().strip(), None)
    return {**native, **{PYTHON_KIND + name: n for name, n in python_threads.items()}}


def scrape(port: int) -> Scraped:
    """python_asyncio_tasks, python_threads{name} and db_client_connections_checked_out{pool}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    found = Scraped()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == TASKS:
                found.tasks = sample.value
            elif sample.name == CHECKOUTS:
                found.checkouts[sample.labels.get("pool", "")] = sample.value
            elif sample.name == THREADS:
                found.threads[sample.labels.get("name", "")] = sample.value
    return found


class StackSampler:
    """Knows the stack's processes and their /metrics ports; ``sample()`` reads them all once."""

    def __init__(self, stack: LocalStack, postmaster: int | None) -> None:
        self.stack = stack
        self.postmaster = postmaster
        self.metrics_ports: dict[str, int] = {
            name: port
            for name, managed in stack.processes.items()
            for env, port in managed.listens_on.items()
            if env.endswith("_METRICS_PORT")
        }

    def pids(self) -> dict[str, list[int]]:
        found = {name: [m.process.pid] for name, m in self.stack.processes.items() if m.process is not None}
        if self.postmaster is not None:
            try:
                children = psutil.Process(self.postmaster).children(recursive=True)
                found[POSTGRES] = [self.postmaster, *(child.pid for child in children)]
            except psutil.Error:
                pass
        return found

    def _read(self, t: float, sagas: int) -> list[Sample]:
        samples = []
        for name, pids in self.pids().items():
            figures = proc_figures(pids, pss=name == POSTGRES)
            rss, fds, threads = figures if figures is not None else (None, None, None)
            sample = Sample(t, sagas, name, rss, fds, threads)
            scraped = Scraped()
            if name in self.metrics_ports:
                try:
                    scraped = scrape(self.metrics_ports[name])
                except OSError:
                    pass  # left None: the report counts missing scrapes
            sample.tasks, sample.checkouts = scraped.tasks, scraped.checkouts
            if name != POSTGRES and figures is not None:
                try:
                    sample.thread_kinds = thread_kinds(pids[0], scraped.threads)
                except OSError:
                    pass  # the process ended between the two reads
            samples.append(sample)
        return samples

    async def sample(self, t: float, sagas: int) -> list[Sample]:
        """Off the event loop: /proc walks and HTTP scrapes would otherwise delay the load's schedule."""
        return await asyncio.to_thread(self._read, t, sagas)


async def every(interval: float, sampler: StackSampler, started: float, sagas: list[int],
                into: list[Sample], stop: asyncio.Event) -> None:
    """Sample at ``started`` + k * ``interval`` until ``stop`` is set (``sagas[0]`` is read live)."""
    k = 0
    while not stop.is_set():
        into.extend(await sampler.sample(time.monotonic() - started, sagas[0]))
        k += 1
        delay = started + k * interval - time.monotonic()
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, delay))
        except TimeoutError:
            pass
