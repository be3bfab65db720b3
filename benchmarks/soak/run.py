"""`make soak`: hold the stack at half its capacity for SOAK_MINUTES and judge what grew.

    .venv/bin/python -m benchmarks.soak [--minutes 30] [--warmup-minutes 5] [--report PATH] [--plot PATH]

1. A throwaway PostgreSQL cluster and the stack on it (benchmarks/bench_saga.py's ``make_stack``:
   identity, two order replicas, payment, nx-27017, telemetry on to OTLP-JSON files), with the
   services' fault header honoured.
2. Capacity: a closed-loop CreateOrder phase at 16 in flight (the bench's ``bench_create_order``).
3. The steady phase: an open loop at ``--load-fraction`` (half) of that capacity with the mix of
   load.py, while sampler.py reads every process every ``--interval`` seconds; then
   ``--cooldown-seconds`` (45) with no load, still sampled (threads a pool gives back when idle).
4. Verdicts (analysis.py, verdicts.py), the report (SOAK_REPORT, default benchmarks/soak/REPORT.md),
   the plot (SOAK_PLOT, default benchmarks/soak/soak.png) and the raw figures
   (benchmarks/out/soak/soak.json). Exit 0 when every bar holds, 1 when one fails, 2 when the soak
   cannot run (no PostgreSQL: the reason is printed).

Environment: SOAK_MINUTES (30), SOAK_WARMUP_MINUTES (5), SOAK_REPORT, SOAK_PLOT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.bench_saga import OUT, ROOT, bench_create_order, make_stack, postmaster_pid
from benchmarks.soak import analysis, plot, report
from benchmarks.soak.load import OpenLoop
from benchmarks.soak.sampler import Sample, StackSampler, every
from tests.support import postgres
from tools.chaos.workload import Clients

SOAK_OUT = OUT / "soak"
DEFAULT_REPORT = ROOT / "benchmarks" / "soak" / "REPORT.md"
DEFAULT_PLOT = ROOT / "benchmarks" / "soak" / "soak.png"
STACK_ENV = {
    "SAGASCOPE_FAULTS_ENABLED": "true",  # the mix asks for declines and failed confirms per request
    "IDENTITY_TOKEN_TTL_SECONDS": "86400",  # the clients log in once, however long the soak
}


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def directory_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20 if path.exists() else 0.0


async def soak(args: argparse.Namespace, database_url: str) -> report.Soak:
    started_at = datetime.now(UTC)
    revision = commit()  # now: the run writes the tracked plot, which would read as "-dirty" later
    load_start = os.getloadavg()
    state = SOAK_OUT / "stack"
    stack = make_stack(state, database_url, True, None, order_replicas=args.order_replicas, extra_env=STACK_ENV)
    await stack.start(timeout=120)
    try:
        sampler = StackSampler(stack, postmaster_pid(database_url))
        print(f"soak: capacity: {args.capacity_requests} CreateOrder, {args.concurrency} in flight", flush=True)
        capacity = await bench_create_order("capacity", stack, args.capacity_requests, args.concurrency, 200)
        print(f"  {capacity.throughput:.0f} sagas/s, p95 {capacity.p95_ms:.0f} ms, {capacity.errors} errors",
              flush=True)
        rate = args.rate or capacity.throughput * args.load_fraction
        seconds = args.minutes * 60
        print(f"soak: {rate:.1f} requests/s for {args.minutes:g} min (warm-up {args.warmup_minutes:g} min), "
              f"sampling every {args.interval:g} s", flush=True)
        clients = await Clients.open(stack.order_target, stack.identity_target)
        samples: list[Sample] = []
        try:
            started = time.monotonic()
            load = OpenLoop(clients, rate, started)
            stop = asyncio.Event()
            sampling = asyncio.create_task(every(args.interval, sampler, started, load.answered, samples, stop))
            progress = asyncio.create_task(_progress(load, started))
            await load.run(seconds)
            # No load, still sampling: a pool that sized itself to the load gives its threads back
            # when idle (gRPC's event engine after 20 s); a leak does not (verdicts.py).
            await asyncio.sleep(args.cooldown_seconds)
            stop.set()
            progress.cancel()
            await sampling
        finally:
            await clients.close()
    finally:
        await stack.stop(grace=30)
    telemetry_mb = directory_mb(state / "telemetry")
    if not args.keep_telemetry:  # gigabytes after an hour; the figures are taken
        shutil.rmtree(state / "telemetry", ignore_errors=True)
    windows = analysis.Windows.of(args.warmup_minutes * 60, seconds, args.window_minutes * 60)
    rows = analysis.process_figures(samples, windows)
    latency = analysis.latency_figures(load.replies, windows)
    unexpected = analysis.unexpected_replies(load.replies)
    p95_minutes = analysis.p95_by_minute(load.replies)
    SOAK_OUT.mkdir(parents=True, exist_ok=True)
    raw = SOAK_OUT / "soak.json"
    raw.write_text(json.dumps({
        "samples": [asdict(s) for s in samples],
        "p95_by_minute_ms": p95_minutes,
        "outcomes": [[kind, outcome, n] for (kind, outcome), n in load.outcomes.items()],
        "capacity": asdict(capacity),
        "rate": rate, "scheduled": load.scheduled, "dropped": load.dropped, "late": load.late,
    }, indent=1))
    plot.plot(samples, p95_minutes, windows.warmup_s, args.plot,
              f"sagascope soak, {args.minutes:g} min at {rate:.0f} req/s, {started_at:%Y-%m-%d %H:%M} UTC")
    return report.Soak(
        started_at, revision, args.minutes, windows, args.interval, args.order_replicas, capacity,
        args.load_fraction, rate, load.scheduled, load.dropped, load.late, load.answered[0], load.outcomes,
        unexpected, latency, p95_minutes, rows,
        analysis.bars(rows, latency, sum(unexpected.values()), load.dropped),
        (load_start, os.getloadavg()), telemetry_mb, args.plot, raw.relative_to(ROOT),
    )


async def _progress(load: OpenLoop, started: float) -> None:
    while True:
        await asyncio.sleep(60)
        print(f"  {(time.monotonic() - started) / 60:.0f} min: {load.answered[0]:,} answered, "
              f"{load.dropped} dropped, {load.late} late", flush=True)


def rerun_command(args: argparse.Namespace) -> str:
    return (f"make soak SOAK_MINUTES={args.minutes:g} SOAK_WARMUP_MINUTES={args.warmup_minutes:g}"
            "   # on a quiet machine: every other process competes for the cores\n"
            "# the other knobs (rate, fraction, windows, replicas): .venv/bin/python -m benchmarks.soak --help")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    env = os.environ.get
    parser.add_argument("--minutes", type=float, default=float(env("SOAK_MINUTES") or 30),
                        help="length of the steady phase (SOAK_MINUTES)")
    parser.add_argument("--warmup-minutes", type=float, default=float(env("SOAK_WARMUP_MINUTES") or 5),
                        help="left out of every verdict (SOAK_WARMUP_MINUTES)")
    parser.add_argument("--window-minutes", type=float, default=5,
                        help="first and last window (shortened to half the post-warm-up time if need be)")
    parser.add_argument("--interval", type=float, default=10, help="seconds between samples")
    parser.add_argument("--cooldown-seconds", type=float, default=analysis.COOLDOWN_SETTLE_S + 20,
                        help="idle sampling after the load stops (threads a pool gives back)")
    parser.add_argument("--capacity-requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16, help="in flight while measuring capacity")
    parser.add_argument("--load-fraction", type=float, default=0.5, help="steady rate as a share of capacity")
    parser.add_argument("--rate", type=float, default=0,
                        help="a fixed steady rate instead of the fraction (requests/s); capacity is still measured")
    parser.add_argument("--order-replicas", type=int, default=2)
    parser.add_argument("--keep-telemetry", action="store_true",
                        help="keep the OTLP-JSON files under benchmarks/out/soak/stack/telemetry (deleted otherwise)")
    parser.add_argument("--report", type=Path, default=Path(env("SOAK_REPORT") or DEFAULT_REPORT))
    parser.add_argument("--plot", type=Path, default=Path(env("SOAK_PLOT") or DEFAULT_PLOT))
    args = parser.parse_args()
    if args.warmup_minutes >= args.minutes:
        parser.error(f"the warm-up ({args.warmup_minutes:g} min) must be shorter than the soak ({args.minutes:g} min)")
    reason = postgres.unavailable_reason()
    if reason:
        print(f"soak: cannot run: {reason}", file=sys.stderr)
        return 2
    with postgres.throwaway_cluster() as database_url:
        result = asyncio.run(soak(args, database_url))
    text = report.render(result, rerun_command(args))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    print(text)
    print(f"soak: wrote {args.report} and {args.plot}; {'PASS' if result.passed else 'FAIL'}", flush=True)
    for bar in result.bars:
        if not bar.passed:
            print(f"soak: FAIL {bar.subject}: {bar.shown} (limit {bar.limit})", file=sys.stderr)
    return 0 if result.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
