"""What does telemetry cost? The same sagas with telemetry on and off, as a markdown report.

    .venv/bin/python -m benchmarks.telemetry_overhead --sagas 300 --concurrency 8

Starts the local stack (nx-27017, identity, payment, order on SQLite) twice — once
with ``SAGASCOPE_TELEMETRY=on`` (spans, metrics and logs to the embedded OTLP-JSON
files, or to ``OTEL_EXPORTER_OTLP_ENDPOINT`` if you set one) and once with
``SAGASCOPE_TELEMETRY=off`` (JSON logs only) — places the same number of
CreateOrder sagas against each after a warm-up, and writes throughput and
p50/p95 latency for both to ``benchmarks/telemetry_overhead_report.md``.
The target is a throughput cost of at most 10%. This is a report, not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sagascope.cli.client import OrderClient, login, order_request
from sagascope.local.services import LocalStack, Ports

USER, PASSWORD = "alice", "alice-dev-password"  # DEVELOPMENT ONLY (sagascope/identity/demo_users.json)
DEFAULT_REPORT = Path(__file__).with_name("telemetry_overhead_report.md")
TARGET_COST = 0.10


@dataclass(frozen=True)
class Result:
    mode: str
    sagas: int
    failures: int
    seconds: float
    latencies_s: list[float]

    @property
    def throughput(self) -> float:
        return self.sagas / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_s)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def _place(client: OrderClient, count: int, concurrency: int, prefix: str) -> tuple[list[float], int]:
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        nonlocal failures
        while not queue.empty():
            i = queue.get_nowait()
            result = await client.create_order(order_request(USER, f"{prefix}-{i}", amount_minor=1999))
            if result.status_name != "COMPLETED":
                failures += 1
            latencies.append(result.elapsed_s)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, failures


async def run_mode(mode: str, sagas: int, warmup: int, concurrency: int, workdir: Path) -> Result:
    env = {
        "SAGASCOPE_TELEMETRY": mode,
        "SAGASCOPE_TELEMETRY_DIR": str(workdir / mode / "telemetry"),
        "SAGASCOPE_LOG_LEVEL": os.environ.get("SAGASCOPE_LOG_LEVEL", "INFO"),
    }
    stack = LocalStack(workdir / mode / "stack", Ports.free(), extra_env=env)
    try:
        await stack.start()
        client = OrderClient(stack.order_target, await login(stack.identity_target, USER, PASSWORD))
        try:
            run = uuid.uuid4().hex[:8]
            await _place(client, warmup, concurrency, f"warm-{mode}-{run}")
            started = time.perf_counter()
            latencies, failures = await _place(client, sagas, concurrency, f"bench-{mode}-{run}")
            elapsed = time.perf_counter() - started
        finally:
            await client.close()
    finally:
        await stack.stop()
    return Result(mode, sagas, failures, elapsed, latencies)


def report(on: Result, off: Result, concurrency: int) -> str:
    cost = 1 - on.throughput / off.throughput if off.throughput else float("nan")
    verdict = "within" if cost <= TARGET_COST else "ABOVE"
    rows = "\n".join(
        f"| {r.mode} | {r.sagas} | {r.failures} | {r.seconds:.2f} | {r.throughput:.1f} | "
        f"{r.percentile(50) * 1000:.1f} | {r.percentile(95) * 1000:.1f} | "
        f"{statistics.fmean(r.latencies_s) * 1000:.1f} |"
        for r in (off, on)
    )
    exporter = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "embedded OTLP-JSON files"
    return f"""# Telemetry overhead

Generated {datetime.now(tz=UTC).isoformat(timespec="seconds")} by `benchmarks/telemetry_overhead.py`
on {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs.

The local stack (identity, payment on nx-27017, order on SQLite) ran the same number of
CreateOrder sagas ({on.sagas}, after a warm-up, {concurrency} concurrent clients) once with
`SAGASCOPE_TELEMETRY=off` (JSON logs only) and once with it on (spans, metrics, OTLP logs; exported to
{exporter}).

| telemetry | sagas | failed | seconds | sagas/s | p50 ms | p95 ms | mean ms |
|---|---|---|---|---|---|---|---|
{rows}

Throughput cost of telemetry: **{cost * 100:.1f}%** — {verdict} the {TARGET_COST * 100:.0f}% target.

Numbers from one machine and one run; SQLite and the embedded MongoDB-wire server dominate the
latency, so treat the cost as an upper bound for this shape of deployment, not a universal figure.
"""


async def main_async(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="sagascope-bench-") as tmp:
        workdir = Path(tmp)
        # Off first, then on: any warm-cache advantage goes to the "on" side, not against it.
        off = await run_mode("off", args.sagas, args.warmup, args.concurrency, workdir)
        on = await run_mode("on", args.sagas, args.warmup, args.concurrency, workdir)
    text = report(on, off, args.concurrency)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    print(f"report written to {args.output}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sagas", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--output", type=Path, default=DEFAULT_REPORT)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
