"""Run a locust scenario against sagascope, then check thresholds; a miss exits 1.

    .venv/bin/python -m tests.load.run --scenario smoke              # starts a local stack (make load-smoke)
    .venv/bin/python -m tests.load.run --scenario load --postgres    # orders on a throwaway PostgreSQL
    .venv/bin/python -m tests.load.run --scenario stress --target 127.0.0.1:50052 \\
        --identity-target 127.0.0.1:50051 --metrics-url http://127.0.0.1:9102/metrics   # a running stack

With no --target a LocalStack is started on free loopback ports with fault injection on:
SAGASCOPE_FAULTS_ENABLED=true and SAGASCOPE_FAULTS=confirm_failure=<--compensation-rate>, so that
share of ordinary CreateOrders is compensated (charge refunded). A running stack must be started with
the same settings for the compensation check to mean anything.

Reports go to benchmarks/out/ (git-ignored): load-<scenario>_stats.csv (+ _history, _failures,
_exceptions), load-<scenario>.html, load-<scenario>-outcomes.json and load-<scenario>-summary.json.

Checks:
- p95 of CreateOrder (client side, locust) <= --p95-ms
- error ratio <= --max-error-ratio: RPC errors plus FAILED orders over all requests; compensated
  (CANCELLED) orders are the injected faults doing their job, not errors
- compensation ratio of ordinary CreateOrders within --tolerance of --compensation-rate
  (client outcomes), and the same from the server's saga_finished_total{outcome="compensated"}
The server's saga_duration_seconds (from /metrics, the change over the run) is printed beside the
client's latency, so the two views can be compared; stress also reports where throughput stops
growing as users are added (the knee).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from sagascope.local.topology import IDENTITY, ORDER, address

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "out"
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
SAGA = "CreateOrder"


@dataclass
class Histogram:
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    count: float = 0.0
    total: float = 0.0

    def minus(self, before: Histogram) -> Histogram:
        return Histogram(
            {le: n - before.buckets.get(le, 0.0) for le, n in self.buckets.items()},
            self.count - before.count, self.total - before.total,
        )

    def quantile(self, q: float) -> float:
        """Prometheus histogram_quantile: linear interpolation inside the bucket."""
        if self.count <= 0:
            return math.nan
        rank, lower, below = q * self.count, 0.0, 0.0
        for le in sorted(self.buckets):
            cumulative = self.buckets[le]
            if cumulative >= rank:
                if math.isinf(le):
                    return lower
                width = cumulative - below
                return lower + (le - lower) * ((rank - below) / width if width else 0)
            lower, below = le, cumulative
        return lower


@dataclass
class ServerView:
    finished: dict[str, float]  # outcome -> count
    duration: Histogram

    def minus(self, before: ServerView) -> ServerView:
        return ServerView(
            {k: v - before.finished.get(k, 0.0) for k, v in self.finished.items()},
            self.duration.minus(before.duration),
        )


def scrape(url: str) -> ServerView:
    """saga_finished_total and saga_duration_seconds for the CreateOrder saga, summed over outcomes."""
    request = urllib.request.Request(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        text = reply.read().decode()
    finished: dict[str, float] = {}
    duration = Histogram()
    for family in text_string_to_metric_families(text.replace("# EOF", "")):
        for sample in family.samples:
            if sample.labels.get("saga") != SAGA:
                continue
            if sample.name == "saga_finished_total":
                outcome = sample.labels.get("outcome", "")
                finished[outcome] = finished.get(outcome, 0.0) + sample.value
            elif sample.name == "saga_duration_seconds_bucket":
                le = float(sample.labels["le"])
                duration.buckets[le] = duration.buckets.get(le, 0.0) + sample.value
            elif sample.name == "saga_duration_seconds_count":
                duration.count += sample.value
            elif sample.name == "saga_duration_seconds_sum":
                duration.total += sample.value
    return ServerView(finished, duration)


@dataclass(frozen=True)
class Target:
    order: str
    identity: str
    metrics_url: str


@contextmanager
def local_stack(args: argparse.Namespace) -> Iterator[Target]:
    """A LocalStack with faults on (and orders on PostgreSQL with --postgres), stopped afterwards."""
    from sagascope.local.services import LocalStack, Ports
    from tests.support import postgres

    with ExitStack() as stack:
        database_url = None
        if args.postgres:
            reason = postgres.unavailable_reason()
            if reason:
                raise SystemExit(f"load: --postgres: {reason}")
            database_url = stack.enter_context(postgres.throwaway_cluster())
        state = OUT / f"stack-load-{args.scenario}"
        shutil.rmtree(state, ignore_errors=True)
        ports = Ports.free()
        env = {
            "SAGASCOPE_ENV": "development",
            "SAGASCOPE_FAULTS_ENABLED": "true",
            "SAGASCOPE_FAULTS": f"confirm_failure={args.compensation_rate}",
            "SAGASCOPE_TELEMETRY_DIR": str(state / "telemetry"),
        }
        services = LocalStack(state, ports=ports, extra_env=env, database_url=database_url, cwd=ROOT)
        asyncio.run(services.start(timeout=120))
        try:
            yield Target(services.order_target, services.identity_target,
                         f"http://127.0.0.1:{ports.order_metrics}/metrics")
        finally:
            asyncio.run(services.stop())


def run_locust(args: argparse.Namespace, target: Target, prefix: Path) -> int:
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", target.order,
        "--scenario", args.scenario, "--identity-target", target.identity,
        "--target-rps", str(args.target_rps), "--max-users", str(args.max_users),
        "--hold-seconds", str(args.hold_seconds), "--stage-seconds", str(args.stage_seconds),
        "--csv", str(prefix), "--csv-full-history", "--html", f"{prefix}.html",
        "--outcomes-file", f"{prefix}-outcomes.json", "--only-summary", "--stop-timeout", "10",
        "--loglevel", "WARNING",
    ]
    print("load:", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode


def read_stats(prefix: Path) -> dict[str, dict[str, str]]:
    with open(f"{prefix}_stats.csv", newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def knee(prefix: Path) -> list[tuple[int, float, float]]:
    """(users, requests/s, p95 ms) per user count, from the per-second history."""
    steps: dict[int, list[tuple[float, float]]] = {}
    with open(f"{prefix}_stats_history.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Name"] != "Aggregated" or row["95%"] in ("N/A", ""):
                continue
            steps.setdefault(int(row["User Count"]), []).append((float(row["Requests/s"]), float(row["95%"])))
    return [(u, sum(r for r, _ in v) / len(v), max(p for _, p in v)) for u, v in sorted(steps.items()) if v]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["smoke", "load", "stress", "spike"], default="smoke")
    parser.add_argument("--target", help="order gRPC host:port of a running stack (default: start one)")
    parser.add_argument("--identity-target", default=address(IDENTITY.grpc.default))
    parser.add_argument("--metrics-url", default=f"http://{address(ORDER.metrics.default)}/metrics")
    parser.add_argument("--postgres", action="store_true", help="started stack: orders on a throwaway PostgreSQL")
    parser.add_argument("--compensation-rate", type=float, default=0.05,
                        help="injected confirm_failure rate (on the started stack; state it for --target)")
    parser.add_argument("--tolerance", type=float, default=0.04, help="allowed |measured - injected| ratio")
    parser.add_argument("--p95-ms", type=float, default=1000.0, help="CreateOrder p95 limit (client side)")
    parser.add_argument("--max-error-ratio", type=float, default=0.01)
    parser.add_argument("--target-rps", type=float, default=60.0)
    parser.add_argument("--max-users", type=int, default=24)
    parser.add_argument("--hold-seconds", type=int, default=60)
    parser.add_argument("--stage-seconds", type=int, default=20)
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    prefix = OUT / f"load-{args.scenario}"
    with ExitStack() as stack:
        if args.target:
            target = Target(args.target, args.identity_target, args.metrics_url)
        else:
            target = stack.enter_context(local_stack(args))
        before = scrape(target.metrics_url)
        code = run_locust(args, target, prefix)
        server = scrape(target.metrics_url).minus(before)
    if code not in (0, 1):  # 1 = some requests failed (judged below); anything else: locust broke
        print(f"load: locust exited {code}", file=sys.stderr)
        return 2

    stats = read_stats(prefix)
    outcomes: dict[str, int] = json.loads(Path(f"{prefix}-outcomes.json").read_text())
    total_requests = int(stats["Aggregated"]["Request Count"])
    rpc_failures = int(stats["Aggregated"]["Failure Count"])
    failed_orders = sum(n for k, n in outcomes.items() if k.endswith(":FAILED"))
    plain = {k.split(":", 1)[1]: n for k, n in outcomes.items() if k.startswith("CreateOrder:")}
    plain_total = sum(plain.values())
    client_comp = plain.get("CANCELLED", 0) / plain_total if plain_total else math.nan
    refunds = {k.split(":", 1)[1]: n for k, n in outcomes.items() if k.startswith("CreateOrder+refund:")}
    server_total = sum(server.finished.values())
    # Server side sees both populations: the refund-header orders are compensated by design.
    expected_compensated = refunds.get("CANCELLED", 0) + args.compensation_rate * plain_total
    expected_server = expected_compensated / server_total if server_total else math.nan
    server_comp = server.finished.get("compensated", 0.0) / server_total if server_total else math.nan
    create = stats.get("CreateOrder", {})
    p95 = float(create.get("95%", "nan") or "nan")
    error_ratio = (rpc_failures + failed_orders) / total_requests if total_requests else math.nan

    checks = [
        (f"CreateOrder p95 {p95:.0f} ms <= {args.p95_ms:.0f} ms", p95 <= args.p95_ms),
        (f"error ratio {error_ratio:.4f} <= {args.max_error_ratio} (RPC errors {rpc_failures}, FAILED orders "
         f"{failed_orders}, of {total_requests})", error_ratio <= args.max_error_ratio),
        (f"client compensation ratio {client_comp:.3f} within {args.tolerance} of injected "
         f"{args.compensation_rate} ({plain.get('CANCELLED', 0)}/{plain_total})",
         abs(client_comp - args.compensation_rate) <= args.tolerance),
        (f"server compensation ratio {server_comp:.3f} within {args.tolerance} of expected {expected_server:.3f} "
         f"(saga_finished_total, {server_total:.0f} sagas)", abs(server_comp - expected_server) <= args.tolerance),
        (f"every refund order was compensated ({refunds})",
         sum(refunds.values()) == refunds.get("CANCELLED", 0)),
    ]
    summary = {
        "scenario": args.scenario, "requests": total_requests, "outcomes": outcomes,
        "client": {"CreateOrder_p50_ms": float(create.get("50%", "nan") or "nan"), "CreateOrder_p95_ms": p95,
                   "requests_per_s": float(stats["Aggregated"]["Requests/s"])},
        "server": {"saga_duration_p50_ms": server.duration.quantile(0.5) * 1000,
                   "saga_duration_p95_ms": server.duration.quantile(0.95) * 1000,
                   "sagas": server_total, "finished": server.finished},
        "checks": [{"check": name, "ok": ok} for name, ok in checks],
    }
    if args.scenario == "stress":
        steps = knee(prefix)
        summary["stress_steps"] = [{"users": u, "rps": r, "p95_ms": p} for u, r, p in steps]
        best = max(steps, key=lambda s: s[1]) if steps else None
        summary["knee"] = {"users": best[0], "rps": best[1]} if best else None
    Path(f"{prefix}-summary.json").write_text(json.dumps(summary, indent=2))

    print(f"\nload {args.scenario}: client CreateOrder p50 {summary['client']['CreateOrder_p50_ms']:.0f} ms, "
          f"p95 {p95:.0f} ms | server saga_duration_seconds p50 {summary['server']['saga_duration_p50_ms']:.0f} ms, "
          f"p95 {summary['server']['saga_duration_p95_ms']:.0f} ms (bucket-interpolated)")
    if args.scenario == "stress":
        for step in summary["stress_steps"]:
            print(f"  {step['users']:>3} users: {step['rps']:.0f} req/s, p95 {step['p95_ms']:.0f} ms")
        print(f"  knee (highest throughput): {summary['knee']}")
    for name, ok in checks:
        print(f"  [{'ok' if ok else 'MISS'}] {name}")
    print(f"  reports: {prefix}.html, {prefix}_stats.csv, {prefix}-summary.json")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
