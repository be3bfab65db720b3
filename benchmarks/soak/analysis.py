"""From the raw samples and replies to the figures the report shows and the bars it judges.

Windows (on the steady phase's clock, seconds): the warm-up ``[0, W)`` is left out of every
verdict; the *first* window is ``[W, W + w)`` and the *last* ``[T - w, T]``, with ``w`` the
configured window (5 min) or half of what is left after the warm-up, whichever is shorter, so
the two never overlap. After ``T`` the load stops and sampling goes on for a cool-down: samples
from ``T + COOLDOWN_SETTLE_S`` on are the *idle* window, where a pool that grew with the load has
given its extra threads back (gRPC reclaims an extra event-engine thread idle for 20 s).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks.bench_saga import percentile
from benchmarks.soak import verdicts
from benchmarks.soak.load import Reply
from benchmarks.soak.sampler import POSTGRES, Sample
from benchmarks.soak.verdicts import Bar

COOLDOWN_SETTLE_S = 25.0  # gRPC's idle-thread limit (20 s) and one sample's slack


@dataclass(frozen=True)
class Windows:
    warmup_s: float
    end_s: float
    window_s: float

    @classmethod
    def of(cls, warmup_s: float, end_s: float, window_s: float) -> Windows:
        return cls(warmup_s, end_s, max(0.0, min(window_s, (end_s - warmup_s) / 2)))

    def first(self, t: float) -> bool:
        return self.warmup_s <= t < self.warmup_s + self.window_s

    def last(self, t: float) -> bool:
        return self.end_s - self.window_s <= t <= self.end_s

    def steady(self, t: float) -> bool:
        return self.warmup_s <= t <= self.end_s

    def idle(self, t: float) -> bool:
        return t >= self.end_s + COOLDOWN_SETTLE_S


@dataclass(frozen=True)
class ProcessFigures:
    process: str
    samples: int
    rss_slope: float  # MB per 100,000 sagas after the warm-up
    rss_first: float  # mean of the first window, MB
    rss_last: float
    floors: dict[str, tuple[float, float]]  # fds / threads / tasks / checkouts -> (first floor, last floor)
    thread_kinds: dict[str, tuple[float, float, float]]  # kind of thread -> first, last, idle floor
    checkouts_max: float
    pools: str


def _floor(values: Sequence[float | None]) -> float:
    present = [v for v in values if v is not None]
    return min(present) if present else math.nan


def _floors3(windows: list[list[float]]) -> tuple[float, float, float]:
    """The floors of the first, last and idle windows."""
    first, last, idle = (_floor(list(window)) for window in windows)
    return first, last, idle


def _mean(values: Sequence[float | None]) -> float:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else math.nan


def process_figures(samples: list[Sample], windows: Windows) -> list[ProcessFigures]:
    rows = []
    for process in dict.fromkeys(s.process for s in samples):
        mine = [s for s in samples if s.process == process]
        steady = [s for s in mine if windows.steady(s.t) and s.rss_mb is not None]
        first = [s for s in mine if windows.first(s.t)]
        last = [s for s in mine if windows.last(s.t)]
        readers: dict[str, Callable[[Sample], float | None]] = {
            "descriptors": lambda s: s.fds,
            "threads": lambda s: s.threads,
            "asyncio tasks": lambda s: s.tasks,
            "pool checkouts": lambda s: sum(s.checkouts.values()) if s.checkouts else None,
        }
        floors = {
            what: (_floor([read(s) for s in first]), _floor([read(s) for s in last]))
            for what, read in readers.items()
        }
        idle = [s for s in mine if windows.idle(s.t)]
        kinds = dict.fromkeys(kind for s in first + last + idle for kind in s.thread_kinds)
        # A kind absent from a sample that names its threads had none then.
        named = [[s for s in window if s.thread_kinds] for window in (first, last, idle)]
        thread_kinds = {
            kind: _floors3([[s.thread_kinds.get(kind, 0) for s in window] for window in named]) for kind in kinds
        }
        rows.append(ProcessFigures(
            process,
            len(mine),
            verdicts.rss_mb_per_100k([s.sagas for s in steady], [s.rss_mb or 0.0 for s in steady]),
            _mean([s.rss_mb for s in first]),
            _mean([s.rss_mb for s in last]),
            floors,
            thread_kinds,
            max((sum(s.checkouts.values()) for s in mine if s.checkouts), default=math.nan),
            ", ".join(sorted({pool for s in mine for pool in s.checkouts})),
        ))
    return rows


def p95_by_minute(replies: list[Reply]) -> dict[int, float]:
    minutes: dict[int, list[float]] = {}
    for reply in replies:
        if reply.expected:
            minutes.setdefault(int(reply.sent_s // 60), []).append(reply.latency_ms)
    return {minute: percentile(values, 95) for minute, values in sorted(minutes.items())}


@dataclass(frozen=True)
class LatencyFigures:
    p95_first_ms: float
    p95_last_ms: float
    drift: float
    p50_ms: float
    p99_ms: float


def latency_figures(replies: list[Reply], windows: Windows) -> LatencyFigures:
    ok = [r for r in replies if r.expected]
    first = [r.latency_ms for r in ok if windows.first(r.sent_s)]
    last = [r.latency_ms for r in ok if windows.last(r.sent_s)]
    steady = [r.latency_ms for r in ok if windows.steady(r.sent_s)]
    p95_first, p95_last = percentile(first, 95), percentile(last, 95)
    return LatencyFigures(p95_first, p95_last, verdicts.drift(p95_first, p95_last),
                          percentile(steady, 50), percentile(steady, 99))


JUDGED_GROWTH = ("descriptors", "threads", "asyncio tasks")
WITHOUT_METRICS = ("mongo", POSTGRES)  # nx-27017 and PostgreSQL: /proc figures only


def bars(rows: list[ProcessFigures], latency: LatencyFigures, unexpected: int, dropped: int) -> list[Bar]:
    found: list[Bar] = []
    for row in rows:
        if row.process != POSTGRES:
            # PostgreSQL's memory is reported, not judged: its shared buffers fill as the tables
            # grow (every order is a row), which is the data growing, not a leak.
            found.append(verdicts.rss_bar(row.process, row.rss_slope))
        for what in JUDGED_GROWTH:
            first, last = row.floors[what]
            if what == "asyncio tasks" and row.process in WITHOUT_METRICS:
                continue  # not a Python service of ours: no /metrics
            if what == "descriptors" and row.process == POSTGRES:
                # Reported, not judged: each backend opens a table's or index's files the first time
                # it touches them and keeps them (up to max_files_per_process), the checkpointer
                # opens and closes what it flushes; the sum moved by +-50 in a 2-minute trial with
                # the process count fixed. A leaked connection is a new backend: "threads" (here
                # processes) is judged, and the services' own descriptors hold the client side.
                continue
            if what == "threads" and row.process != POSTGRES:
                found.append(verdicts.thread_bar(row.process, last - first, row.thread_kinds))
                continue
            found.append(verdicts.growth_bar(row.process, what, last - first))
    found.append(verdicts.drift_bar(latency.drift))
    found.append(verdicts.errors_bar(unexpected))
    found.append(Bar("slots dropped (in-flight bound reached)", dropped, "0", dropped == 0, str(dropped)))
    return found


def unexpected_replies(replies: list[Reply]) -> Counter[tuple[str, str]]:
    return Counter((r.kind, r.outcome) for r in replies if not r.expected)
