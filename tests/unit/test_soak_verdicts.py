"""The soak's bars fire on planted leaks and hold on flat, noisy series (benchmarks/soak/)."""

from __future__ import annotations

import math
import random

from benchmarks.soak import analysis, verdicts
from benchmarks.soak.load import Reply
from benchmarks.soak.sampler import Sample

INTERVAL_S = 10
RATE = 80  # sagas per second, as at half the measured capacity


def series(minutes: float, rss: float, fds: float, tasks: float, seed: int = 1) -> list[Sample]:
    """A process sampled every 10 s: ``rss`` MB, ``fds``, ``tasks`` per 100,000 sagas of growth on top
    of in-flight noise (a few descriptors and tasks up at any moment, RSS jitter of ±2 MB)."""
    rng = random.Random(seed)
    samples = []
    for k in range(int(minutes * 60 / INTERVAL_S) + 1):
        t = k * INTERVAL_S
        sagas = t * RATE
        busy = rng.randint(0, 6)  # requests in flight at this sample
        samples.append(Sample(
            t, sagas, "order",
            rss_mb=120 + rss * sagas / 100_000 + rng.uniform(-2, 2),
            fds=40 + math.floor(fds * sagas / 100_000) + busy,
            threads=12,
            tasks=9 + math.floor(tasks * sagas / 100_000) + 2 * busy,
            checkouts={"sqlalchemy": float(rng.randint(0, 3))},
        ))
    return samples


WINDOWS = analysis.Windows.of(5 * 60, 30 * 60, 5 * 60)


def order_bars(samples: list[Sample]) -> dict[str, verdicts.Bar]:
    (row,) = analysis.process_figures(samples, WINDOWS)
    latency = analysis.LatencyFigures(100, 110, 0.1, 50, 200)
    return {bar.subject: bar for bar in analysis.bars([row], latency, 0, 0)}


def test_flat_noisy_series_pass_every_bar() -> None:
    for seed in range(20):
        found = order_bars(series(30, rss=0, fds=0, tasks=0, seed=seed))
        assert all(bar.passed for bar in found.values()), (seed, [b for b in found.values() if not b.passed])


def test_a_memory_leak_above_the_bar_fails_and_one_below_passes() -> None:
    assert not order_bars(series(30, rss=8, fds=0, tasks=0))["order RSS"].passed
    slope = order_bars(series(30, rss=8, fds=0, tasks=0))["order RSS"].value
    assert 6 < slope < 10  # the planted 8 MB per 100k sagas, read back through the noise
    assert order_bars(series(30, rss=2, fds=0, tasks=0))["order RSS"].passed


def test_a_few_leaked_descriptors_or_tasks_over_the_run_fail() -> None:
    # 30 minutes at 80/s = 144,000 sagas; 3 per 100k = 3 to 4 leaked over the run, under noise of 6.
    assert not order_bars(series(30, rss=0, fds=3, tasks=0))["order descriptors"].passed
    assert not order_bars(series(30, rss=0, fds=0, tasks=3))["order asyncio tasks"].passed
    assert order_bars(series(30, rss=0, fds=3, tasks=0))["order asyncio tasks"].passed


def test_missing_figures_fail_rather_than_pass() -> None:
    samples = series(30, rss=0, fds=0, tasks=0)
    for sample in samples:
        sample.tasks = None  # /metrics never answered
    assert not order_bars(samples)["order asyncio tasks"].passed


def test_p95_drift_over_a_quarter_fails() -> None:
    def replies(first_ms: float, last_ms: float) -> list[Reply]:
        out = []
        for second in range(30 * 60):
            latency = first_ms if second < 15 * 60 else last_ms
            out.extend(Reply(second + i / 10, latency * (1 + i / 100), "completed", "ORDER_STATUS_COMPLETED", True)
                       for i in range(10))
        return out

    slow = analysis.latency_figures(replies(100, 130), WINDOWS)
    assert math.isclose(slow.drift, 0.30, rel_tol=1e-9)
    assert not verdicts.drift_bar(slow.drift).passed
    steady = analysis.latency_figures(replies(100, 110), WINDOWS)
    assert verdicts.drift_bar(steady.drift).passed


def test_slope_and_windows() -> None:
    assert verdicts.slope([0, 1, 2, 3], [1, 3, 5, 7]) == 2
    assert math.isnan(verdicts.slope([1, 1], [0, 5]))
    short = analysis.Windows.of(60, 240, 300)  # a 4-minute trial: windows of half the rest
    assert short.window_s == 90 and short.first(60) and not short.first(150) and short.last(150)


def test_postgresql_is_judged_on_its_processes_not_its_buffers_or_file_cache() -> None:
    samples = series(30, rss=300, fds=200, tasks=0)
    for sample in samples:
        sample.process, sample.tasks, sample.checkouts = "postgres", None, {}
    (row,) = analysis.process_figures(samples, WINDOWS)
    found = {bar.subject for bar in analysis.bars([row], analysis.LatencyFigures(1, 1, 0, 1, 1), 0, 0)}
    assert "postgres threads" in found
    assert not {"postgres RSS", "postgres descriptors", "postgres asyncio tasks"} & found


def with_threads(samples: list[Sample], grown_kind: str, by: int, from_minute: float,
                 back_when_idle: bool = False) -> list[Sample]:
    """Name every sample's threads; ``by`` more of ``grown_kind`` from ``from_minute`` on; then a
    minute of idle samples after the load, where the growth is gone if ``back_when_idle``."""
    last = samples[-1]
    idle = [Sample(last.t + k * INTERVAL_S, last.sagas, last.process, last.rss_mb, last.fds, 0,
                   tasks=last.tasks, checkouts=dict(last.checkouts)) for k in range(1, 7)]
    for sample in [*samples, *idle]:
        grown = sample.t >= from_minute * 60 and not (back_when_idle and sample in idle)
        kinds = {"python MainThread": 1.0, "python uvloop": 1.0, "event_engine": 4.0, "grpc_global_tim": 1.0}
        kinds[grown_kind] = kinds.get(grown_kind, 0.0) + (by if grown else 0)
        sample.thread_kinds = kinds
        sample.threads = int(sum(kinds.values())) + 5
    return [*samples, *idle]


def test_threads_may_grow_only_in_the_loops_default_executor_within_its_maximum() -> None:
    flat = order_bars(with_threads(series(30, rss=0, fds=0, tasks=0), "python uvloop", 0, 0))["order threads"]
    assert flat.passed and flat.value == 0
    executor = order_bars(with_threads(series(30, rss=0, fds=0, tasks=0), "python uvloop", 1, 15))["order threads"]
    assert executor.passed and executor.value == 1 and "python uvloop 1 → 2" in executor.shown
    beyond = verdicts.DEFAULT_EXECUTOR_MAX  # one more than the pool may ever have
    flood = order_bars(with_threads(series(30, rss=0, fds=0, tasks=0), "python uvloop", beyond, 15))
    assert not flood["order threads"].passed
    for other in ("event_engine", "python Thread", "python ThreadPoolExecutor"):
        grown = order_bars(with_threads(series(30, rss=0, fds=0, tasks=0), other, 1, 15))["order threads"]
        assert not grown.passed, other
        given_back = with_threads(series(30, rss=0, fds=0, tasks=0), other, 1, 15, back_when_idle=True)
        elastic = order_bars(given_back)["order threads"]
        assert elastic.passed and "back to" in elastic.shown, other
    unexplained = series(30, rss=0, fds=0, tasks=0)
    for sample in unexplained:
        sample.threads = 12 + (1 if sample.t >= 15 * 60 else 0)  # grew, and no kind names it
    assert not order_bars(unexplained)["order threads"].passed
