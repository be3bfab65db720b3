"""Runtime gauges a leak shows up in first: the event loop's tasks, the Python threads by name and
the database pools' checkouts.

The Prometheus process collector already gives RSS, open descriptors and a thread count; these are
the Python service's own resources, read at scrape time (nothing runs on the request path except
the MongoDB listener's two integer updates per checkout):

- ``python_asyncio_tasks`` — unfinished tasks of the service's event loop.
- ``python_threads{name}`` — the interpreter's threads by name with the numbering taken out
  (``uvloop_3`` -> ``uvloop``, ``Thread-2 (serve_forever)`` -> ``Thread (serve_forever)``), so a
  count that grows says which pool grew. Threads the C extensions start (gRPC's event engine,
  libuv's workers) are not Python threads: ``/proc/<pid>/task/*/comm`` names those.
- ``db_client_connections_checked_out{pool}`` — connections a pool has lent out right now
  (``pool`` = ``sqlalchemy`` for the order service's engine, ``pymongo`` for the payment
  service's client).

The scrape runs in prometheus_client's HTTP thread, not on the loop: ``asyncio.all_tasks(loop)``
copies the loop's task set with retries exactly so that another thread may call it (CPython's
comment in asyncio/tasks.py), and the pool counters are plain integers read under the GIL.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from sagascope.common.telemetry.mongo_pool import MongoCheckoutCounter

PoolReader = Callable[[], int | None]  # None: this pool cannot say (the sample is left out)


class AsyncioTasksCollector(Collector):
    """``python_asyncio_tasks``: the unfinished tasks of one event loop, counted at scrape time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tasks = 0 if self._loop.is_closed() else len(asyncio.all_tasks(self._loop))
        yield GaugeMetricFamily(
            "python_asyncio_tasks", "Unfinished asyncio tasks of the service's event loop (count of tasks).",
            value=tasks,
        )


_NUMBERING = re.compile(r"-\d+(?:_\d+)?|_\d+$")  # Thread-3, ThreadPoolExecutor-0_1, uvloop_0


def thread_kind(name: str) -> str:
    """A thread's name without the number its pool gave it."""
    return _NUMBERING.sub("", name)


class ThreadsCollector(Collector):
    """``python_threads{name}``: ``threading.enumerate()`` counted by :func:`thread_kind`."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "python_threads", "Python threads alive, by name without its pool number (count of threads).",
            labels=("name",),
        )
        for kind, count in sorted(Counter(thread_kind(t.name) for t in threading.enumerate()).items()):
            family.add_metric([kind], count)
        yield family


class PoolCheckoutsCollector(Collector):
    """``db_client_connections_checked_out{pool}`` from one reader per pool."""

    def __init__(self) -> None:
        self._readers: dict[str, PoolReader] = {}
        self._lock = threading.Lock()

    def add(self, pool: str, reader: PoolReader) -> None:
        with self._lock:
            self._readers[pool] = reader

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "db_client_connections_checked_out",
            "Database connections lent out by the client pool right now (count of connections).",
            labels=("pool",),
        )
        with self._lock:
            readers = dict(self._readers)
        for pool, read in sorted(readers.items()):
            value = read()
            if value is not None:
                family.add_metric([pool], value)
        yield family


class RuntimeMetrics:
    """The gauges in one service's registry: threads and pools from the start, the loop once it runs."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._loop: asyncio.AbstractEventLoop | None = None
        self.pools = PoolCheckoutsCollector()
        registry.register(self.pools)
        registry.register(ThreadsCollector())

    def watch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Count ``loop``'s tasks from now on (the first loop only: a service runs one)."""
        if self._loop is None:
            self._loop = loop
            self._registry.register(AsyncioTasksCollector(loop))

    def sqlalchemy_pool(self, engine: AsyncEngine, pool: str = "sqlalchemy") -> None:
        """The engine's current pool (``dispose()`` replaces it, so it is looked up at each scrape);
        pools that keep no count (NullPool, StaticPool) give no sample."""

        def read() -> int | None:
            checkedout = getattr(engine.sync_engine.pool, "checkedout", None)
            return int(checkedout()) if checkedout is not None else None

        self.pools.add(pool, read)

    def pymongo_pool(self, pool: str = "pymongo") -> MongoCheckoutCounter:
        """A listener to hand to the client (``event_listeners=[...]``), counted under ``pool``."""
        # Imported here: only the payment service talks to MongoDB, and PyMongo costs the
        # others ~6 MB of resident memory for nothing.
        from sagascope.common.telemetry.mongo_pool import MongoCheckoutCounter

        counter = MongoCheckoutCounter()
        self.pools.add(pool, lambda: counter.checked_out)
        return counter
