"""The soak's bars, as pure functions of the samples (unit-tested on planted leaks and flat noise).

- **RSS**: the least-squares slope of a process's resident set against the sagas finished so far,
  after the warm-up, in MB per 100,000 sagas. Fails above 5. Against sagas, not time: a leak per
  request shows the same slope at any rate, and an idle period adds nothing.
- **Descriptors, asyncio tasks, threads: any growth.** Each is compared as the *minimum* over the
  first window after the warm-up against the minimum over the last window. In-flight requests
  hold descriptors and tasks for milliseconds, so any one sample may be up by a few; the minimum
  over a window of ~30 samples is the process's floor with nothing in flight, and at a steady
  rate the floor does not move unless something is kept. A leak of even one descriptor per few
  thousand sagas lifts every sample of the last window, so its minimum too: growth = last floor -
  first floor > 0 fails.
- **Threads: the same, with two exceptions, judged per kind of thread.** A pool that sizes itself
  to the load is not a leak if it gives the threads back once the load stops: gRPC's event engine
  starts a thread when its workers are all busy and reclaims one idle for 20 s, so a kind whose
  floor in the idle window after the load is back at its first-window floor passes. And a pool
  that starts threads only as work arrives and keeps them, up to a fixed maximum, lifts the floor
  once under a burst and never again: the event loop's default executor (``uvloop_N``/
  ``asyncio_N``, a ``ThreadPoolExecutor`` of at most min(32, cores + 4) threads) passes within that
  maximum. Growth of any other kind fails, and so does growth no kind explains.
- **p95 drift**: p95 latency of the last window over that of the first, minus one. Fails above 25 %.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

RSS_MB_PER_100K_MAX = 5.0
P95_DRIFT_MAX = 0.25
PER_SAGAS = 100_000
DEFAULT_EXECUTOR_MAX = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's default max_workers
GROW_ONCE_POOLS = {  # thread kind (benchmarks/soak/sampler.py) -> most threads it ever starts
    "python uvloop": DEFAULT_EXECUTOR_MAX,  # uvloop's default executor
    "python asyncio": DEFAULT_EXECUTOR_MAX,  # asyncio's
}


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys on xs (nan with fewer than two distinct xs)."""
    n = len(xs)
    if n < 2 or n != len(ys):
        return math.nan
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return math.nan
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def rss_mb_per_100k(sagas: Sequence[float], rss_mb: Sequence[float]) -> float:
    return slope(sagas, rss_mb) * PER_SAGAS


def floor_growth(first_window: Sequence[float], last_window: Sequence[float]) -> float:
    """Minimum of the last window minus minimum of the first (nan if either is empty)."""
    if not first_window or not last_window:
        return math.nan
    return min(last_window) - min(first_window)


def drift(first: float, last: float) -> float:
    """last / first - 1 (nan when the first is not a positive figure)."""
    if not first > 0:
        return math.nan
    return last / first - 1


@dataclass(frozen=True)
class Bar:
    """One verdict row: what was measured, the limit, and whether it held."""

    subject: str  # "order RSS", "payment descriptors", "p95 drift", ...
    value: float
    limit: str
    passed: bool
    shown: str  # the value as the report prints it


def rss_bar(process: str, value: float) -> Bar:
    # nan (too few samples) is a failure: a soak that could not measure has not passed.
    return Bar(f"{process} RSS", value, f"≤ {RSS_MB_PER_100K_MAX:g} MB / 100k sagas",
               value <= RSS_MB_PER_100K_MAX, f"{value:+.2f} MB / 100k sagas")


def growth_bar(process: str, what: str, value: float) -> Bar:
    return Bar(f"{process} {what}", value, "no growth (floor of last window ≤ floor of first)", value <= 0,
               f"{value:+g}")


def drift_bar(value: float) -> Bar:
    return Bar("p95 drift", value, f"≤ {P95_DRIFT_MAX:.0%}", value <= P95_DRIFT_MAX, f"{value:+.1%}")


def errors_bar(unexpected: int) -> Bar:
    return Bar("replies not asked for (errors, wrong outcome)", unexpected, "0", unexpected == 0, str(unexpected))


def _explained(kind: str, first: float, last: float, idle: float) -> str | None:
    """Why this kind's growth is not a leak, or None."""
    if idle <= first:  # nan (no idle samples) compares False: unexplained
        return f"{kind} {first:g} → {last:g}, back to {idle:g} when idle"
    if kind in GROW_ONCE_POOLS and last <= GROW_ONCE_POOLS[kind]:
        return f"{kind} {first:g} → {last:g}, a grow-once pool of at most {GROW_ONCE_POOLS[kind]}"
    return None


def thread_bar(process: str, growth: float, kinds: Mapping[str, tuple[float, float, float]]) -> Bar:
    """``growth`` of the thread floor, explained by ``kinds`` (kind -> first, last and idle floor)."""
    risen = {kind: floors for kind, floors in kinds.items() if floors[1] > floors[0]}
    reasons = {kind: _explained(kind, *floors) for kind, floors in risen.items()}
    explained = bool(risen) and all(reasons.values())
    shown = f"{growth:+g}"
    if growth > 0:
        shown += " (" + ("; ".join(
            reason or f"{kind} {risen[kind][0]:g} → {risen[kind][1]:g}, still {risen[kind][2]:g} when idle"
            for kind, reason in reasons.items()
        ) or "no kind rose") + ")"
    return Bar(f"{process} threads", growth,
               "no growth, but for a pool that gives threads back when idle or stays within its maximum",
               growth <= 0 or explained, shown)
