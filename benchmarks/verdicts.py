"""`make bench`'s targets and their verdicts, read from the raw per-round figures (bench.json's shape).

Each round runs every phase once (the stacks take turns), so a ratio taken within one round
compares phases run minutes apart on the same host; the host's speed, which swings by a third
between hours, largely cancels. A target's verdict is the **median of its per-round ratios**, so
one noisy round cannot flip it; the report shows every round's ratio and their range.

The input is what ``benchmarks/out/bench.json`` holds — ``{phase: [round, ...]}``, each round a
dict with ``cpu_ms`` (CPU milliseconds per request by process), ``p95_ms``, ``throughput`` and
``peak_rss_mb`` — so an independent check can recompute every verdict from that file alone.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Round = Mapping[str, Any]
Rounds = Mapping[str, Sequence[Round]]

DIRECT, SAGA, SAGA_OFF, FLOOR = "direct", "saga", "saga_off", "floor"
SERVICES = ("identity", "payment", "order")  # order replicas are order, order-2, ...


def cpu_total(phase: Round) -> float:
    """CPU milliseconds per request, all processes of the phase summed."""
    return float(sum(phase["cpu_ms"].values()))


def peak_service_rss(phases: Sequence[Round]) -> float:
    """The largest peak RSS (MB) of any service process over ``phases`` (nx-27017, PostgreSQL and the
    benchmark's own empty server are not services)."""
    return max(
        (mb for phase in phases for name, mb in phase.get("peak_rss_mb", {}).items() if name.startswith(SERVICES)),
        default=float("nan"),
    )


@dataclass(frozen=True)
class Target:
    label: str
    limit: float
    at_most: bool  # True: met when the median is <= limit; False: when it is >= limit
    per_round: Callable[[Rounds, int], float]  # the figure in round i
    unit: str = "x"

    def met(self, value: float) -> bool:
        return value <= self.limit if self.at_most else value >= self.limit

    @property
    def bound(self) -> str:
        return f"{'≤' if self.at_most else '≥'} {self.limit:g}{self.unit}"


# The bounds (issue 19), named: benchmarks/telemetry_floor.py compares the SDK's cost with them too.
SAGA_CPU_BOUND = 2.5  # saga CPU per request <= this many direct calls'
SAGA_P95_BOUND = 2.5
TELEMETRY_BOUND = 0.75  # telemetry's CPU per saga <= this many direct calls'
THROUGHPUT_BOUND = 0.5
RSS_BOUND_MB = 120.0


def _in_round(rounds: Rounds, key: str, i: int) -> Round:
    return rounds[key][i]


TARGETS = (
    Target(
        "saga CPU per request / direct call's (all processes)", SAGA_CPU_BOUND, True,
        lambda r, i: cpu_total(_in_round(r, SAGA, i)) / cpu_total(_in_round(r, DIRECT, i)),
    ),
    Target(
        "saga p95 / direct p95", SAGA_P95_BOUND, True,
        lambda r, i: float(_in_round(r, SAGA, i)["p95_ms"]) / float(_in_round(r, DIRECT, i)["p95_ms"]),
    ),
    Target(
        "telemetry CPU per saga (on - off, all processes) / one direct call", TELEMETRY_BOUND, True,
        lambda r, i: (cpu_total(_in_round(r, SAGA, i)) - cpu_total(_in_round(r, SAGA_OFF, i)))
        / cpu_total(_in_round(r, DIRECT, i)),
    ),
    Target(
        "sagas/s / direct calls/s (telemetry on)", THROUGHPUT_BOUND, False,
        lambda r, i: float(_in_round(r, SAGA, i)["throughput"]) / float(_in_round(r, DIRECT, i)["throughput"]),
    ),
    Target(
        "peak RSS of the largest service", RSS_BOUND_MB, True,
        lambda r, i: peak_service_rss([runs[i] for runs in r.values() if i < len(runs)]),
        unit=" MB",
    ),
)


@dataclass(frozen=True)
class Verdict:
    target: Target
    per_round: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.per_round)

    @property
    def low(self) -> float:
        return min(self.per_round)

    @property
    def high(self) -> float:
        return max(self.per_round)

    @property
    def met(self) -> bool:
        return self.target.met(self.median)


def round_count(rounds: Rounds, keys: Sequence[str] = (DIRECT, SAGA, SAGA_OFF)) -> int:
    """Rounds in which every phase the targets need ran."""
    return min((len(rounds.get(key, ())) for key in keys), default=0)


def verdicts(rounds: Rounds, targets: Sequence[Target] = TARGETS) -> list[Verdict]:
    count = round_count(rounds)
    if count == 0:
        raise ValueError("no complete round: every target needs the direct, saga and saga_off phases")
    return [Verdict(target, tuple(target.per_round(rounds, i) for i in range(count))) for target in targets]


def floor_units(rounds: Rounds, phase: str = SAGA) -> tuple[float, ...]:
    """Per round: ``phase``'s CPU per request (all processes) in empty gRPC calls (client + server)."""
    count = round_count(rounds, (phase, FLOOR))
    return tuple(cpu_total(rounds[phase][i]) / cpu_total(rounds[FLOOR][i]) for i in range(count))


def median_by_process(runs: Sequence[Round]) -> dict[str, float]:
    """Each process's median CPU ms per request over ``runs`` (a process missing from a run counts 0)."""
    names = sorted({name for run in runs for name in run["cpu_ms"]})
    return {name: statistics.median(float(run["cpu_ms"].get(name, 0.0)) for run in runs) for name in names}
