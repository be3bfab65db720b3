"""`make bench`: ProcessPayment direct vs the CreateOrder saga vs the saga with telemetry off, on PostgreSQL.

    .venv/bin/python -m benchmarks.bench_saga [--requests 2000] [--concurrency 16] [--rounds 3] [--profile]

One machine, side by side:
  (a) payment-service ProcessPayment called directly (as the order-service account);
  (b) order-service CreateOrder — the whole saga: reserve (PostgreSQL) -> ProcessPayment -> confirm;
  (c) (b) again after restarting the stack with SAGASCOPE_TELEMETRY=off;
  (d) (b) with 10 % head sampling (``--sampled-ratio``), (e) with one order replica instead of
      two, (f) on a second PostgreSQL cluster with the durable settings (fsync and
      synchronous_commit on) instead of the fast throwaway ones (fsync off).

Every stack also reports each service's peak RSS (the kernel's VmHWM).

Each phase sends a fixed number of requests with a fixed number in flight (asyncio,
one channel) after a warm-up, and records p50/p95 latency, throughput and the CPU
every process spent per request. The three stacks take turns for ``--rounds``
rounds and each phase is reported by its median run: this shared machine swings
by up to a quarter between identical runs, CPU per request much less. The
services run as local processes (sagascope.local.services.LocalStack) on free
loopback ports, orders on a throwaway PostgreSQL cluster (tests/support/postgres.py),
payments on nx-27017. Telemetry "on" means the default local set-up: no
OTEL_EXPORTER_OTLP_ENDPOINT, so spans and logs go to OTLP-JSON files under the
stack's state directory, and metrics are served on /metrics.

--profile wraps the order process in pyinstrument (benchmarks only; services/
are untouched) and writes benchmarks/out/profile-order-<phase>.txt.

Writes benchmarks/REPORT.md (figures, ratios, targets, machine, commands) and
benchmarks/out/bench.json (raw). The load generator shares the machine's cores
with the services; the report says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import psutil
from sqlalchemy.engine import make_url

from sagascope.api.orders.v1 import orders_pb2
from sagascope.api.payments.v1 import payments_pb2, payments_pb2_grpc
from sagascope.cli.client import OrderClient, login, order_request
from sagascope.local.services import LocalStack, Ports
from tests.support import postgres

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
REPORT = ROOT / "benchmarks" / "REPORT.md"
# Hand-written profiling findings and what-if figures, appended to every generated report.
FINDINGS = ROOT / "benchmarks" / "FINDINGS.md"

# Targets (issue 11): ratios from one run, so the host's speed cancels out.
MAX_SAGA_TO_DIRECT_CPU = 3.5  # saga CPU per request, all processes, vs one direct call's
MAX_SAGA_TO_DIRECT_P95 = 3.5
MAX_TELEMETRY_TO_DIRECT_CPU = 1.0  # telemetry's CPU per saga (on - off, all processes) vs one direct call
EXPECTED_SAGAS_PER_SECOND = 250.0  # on a quiet host, once the ratios hold (reported, not a verdict)
MAX_PEAK_RSS_MB = 150.0
DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on"}


@dataclass
class Phase:
    name: str
    requests: int
    concurrency: int
    ok: int
    errors: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput: float  # successful requests per second
    error_samples: list[str]
    # CPU milliseconds per measured request, by process group (order replicas summed, PostgreSQL's
    # backends, this load generator): steadier than throughput on a shared machine.
    cpu_ms: dict[str, float] = field(default_factory=dict)
    # Peak resident memory of each service process so far (MB, VmHWM), read after the phase.
    peak_rss_mb: dict[str, float] = field(default_factory=dict)

    @property
    def cpu_total_ms(self) -> float:
        return sum(self.cpu_ms.values())


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


CpuProbe = Callable[[], dict[str, float]]


def postmaster_pid(database_url: str | None) -> int | None:
    """The PID of the PostgreSQL server behind ``database_url``, found by the port on its command
    line, so only this cluster's processes are counted: other PostgreSQL servers on a shared
    machine (other test runs) run as the same user."""
    if not database_url or not database_url.startswith("postgresql"):
        return None
    port = str(make_url(database_url).port or 5432)
    for process in psutil.process_iter(["username", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["username"] == "postgres" and "-p" in cmdline and port in cmdline:
            if cmdline[cmdline.index("-p") + 1] == port:
                return int(process.pid)
    return None


def stack_cpu_probe(stack: LocalStack) -> CpuProbe:
    """CPU seconds so far of every process the phase loads, grouped: the services (order replicas
    summed), this stack's PostgreSQL cluster (its postmaster and backends) and this process."""
    postmaster = postmaster_pid(stack.database_url)

    def seconds(process: psutil.Process, children: bool = False) -> float:
        """``children``: a service wrapped by pyinstrument runs as its child; PostgreSQL's backends."""
        try:
            times = process.cpu_times()
            total = times.user + times.system
            for child in process.children(recursive=True) if children else ():
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
            return total
        except psutil.Error:
            return 0.0

    def probe() -> dict[str, float]:
        groups: dict[str, float] = {}
        for name, managed in stack.processes.items():
            if managed.process is not None:
                group = "order" if name.startswith("order") else name
                groups[group] = groups.get(group, 0.0) + seconds(psutil.Process(managed.process.pid), True)
        if postmaster is not None:
            # Backends that exit during a phase take their CPU with them: the pool keeps its
            # connections, so within a phase they do not.
            groups["postgres"] = seconds(psutil.Process(postmaster), True)
        groups["load client"] = seconds(psutil.Process())
        return groups

    return probe


def peak_rss_mb(stack: LocalStack) -> dict[str, float]:
    """Each process's peak resident set (the kernel's high-water mark, VmHWM) in MB."""
    peaks: dict[str, float] = {}
    for name, managed in stack.processes.items():
        if managed.process is None:
            continue
        try:
            status = Path(f"/proc/{managed.process.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks[name] = int(line.split()[1]) / 1024
    return peaks


async def drive(
    name: str, call: Callable[[int], Awaitable[str | None]], requests: int, concurrency: int, warmup: int,
    cpu_probe: CpuProbe | None = None,
) -> Phase:
    """Run ``call(i)`` ``requests`` times with ``concurrency`` in flight; None means success."""
    counter = iter(range(warmup))

    async def warm() -> None:
        for i in counter:
            await call(-1 - i)

    await asyncio.gather(*(warm() for _ in range(concurrency)))
    latencies: list[float] = []
    errors: list[str] = []
    todo = iter(range(requests))

    async def worker() -> None:
        for i in todo:
            started = time.perf_counter()
            error = await call(i)
            elapsed = time.perf_counter() - started
            if error is None:
                latencies.append(elapsed)
            else:
                errors.append(error)

    cpu_before = cpu_probe() if cpu_probe else {}
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    cpu_after = cpu_probe() if cpu_probe else {}
    ms = [x * 1000 for x in latencies]
    return Phase(
        name, requests, concurrency, len(latencies), len(errors), seconds,
        percentile(ms, 50), percentile(ms, 95), percentile(ms, 99), len(latencies) / seconds,
        sorted(set(errors))[:5],
        {key: 1000 * (cpu_after[key] - cpu_before.get(key, 0.0)) / requests for key in cpu_after},
    )


def make_stack(
    state_dir: Path, database_url: str, telemetry: bool, profile: str | None, whatif: str = "",
    order_replicas: int = 1, extra_env: dict[str, str] | None = None,
) -> LocalStack:
    shutil.rmtree(state_dir, ignore_errors=True)
    env = {
        "SAGASCOPE_ENV": "development",
        "SAGASCOPE_TELEMETRY": "on" if telemetry else "off",
        "SAGASCOPE_TELEMETRY_DIR": str(state_dir / "telemetry"),
        "SAGASCOPE_FAULTS_ENABLED": "false",
        "ORDER_DB_POOL_SIZE": os.environ.get("ORDER_DB_POOL_SIZE", "10"),
        **(extra_env or {}),
    }
    # Never export to a collector that may or may not be running: the local default is files.
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        os.environ.pop(name, None)
    stack = LocalStack(state_dir, ports=Ports.free(), extra_env=env, database_url=database_url, cwd=ROOT,
                       order_replicas=order_replicas)
    order = stack.processes["order"]
    module = "sagascope.order"
    if whatif:
        order.env["BENCH_WHATIF"] = whatif
        module = "benchmarks.whatif_order"
        order.command = [sys.executable, "-m", module]
    if profile:
        order.command = [sys.executable, "-m", "pyinstrument", "--show-all", "-r", "text", "-o", profile,
                         "-m", module]
    return stack


async def bench_direct_payment(stack: LocalStack, requests: int, concurrency: int, warmup: int) -> Phase:
    token = await login(stack.identity_target, "order-service", "order-service-dev-secret")
    metadata = (("authorization", f"Bearer {token}"),)
    run = uuid.uuid4().hex[:8]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports.payment_grpc}") as channel:
        stub = payments_pb2_grpc.PaymentServiceStub(channel)

        async def call(i: int) -> str | None:
            request = payments_pb2.ProcessPaymentRequest(
                order_id=f"bench-{run}-{i}", amount_minor=4999, currency="EUR",
                idempotency_key=f"bench-{run}-{i}:charge",
            )
            try:
                reply = await stub.ProcessPayment(request, metadata=metadata, timeout=30)
            except grpc.aio.AioRpcError as exc:
                return exc.code().name
            return None if reply.payment.status == payments_pb2.PAYMENT_STATUS_CHARGED else "not charged"

        phase = await drive("direct ProcessPayment", call, requests, concurrency, warmup, stack_cpu_probe(stack))
        phase.peak_rss_mb = peak_rss_mb(stack)
        return phase


async def bench_create_order(
    name: str, stack: LocalStack, requests: int, concurrency: int, warmup: int
) -> Phase:
    token = await login(stack.identity_target, "alice", "alice-dev-password")
    client = OrderClient(stack.order_target, token)
    run = uuid.uuid4().hex[:8]
    try:
        async def call(i: int) -> str | None:
            result = await client.create_order(order_request("alice", f"bench-{run}-{i}"), timeout=30)
            if result.order is None:
                return result.code.name
            if result.order.status != orders_pb2.ORDER_STATUS_COMPLETED:
                return result.status_name
            return None

        phase = await drive(name, call, requests, concurrency, warmup, stack_cpu_probe(stack))
        phase.peak_rss_mb = peak_rss_mb(stack)
        return phase
    finally:
        await client.close()


async def run_phase_stack(
    label: str, database_url: str, telemetry: bool, profile: bool,
    body: Callable[[LocalStack], Awaitable[list[Phase]]], whatif: str = "",
    order_replicas: int = 1, extra_env: dict[str, str] | None = None,
) -> list[Phase]:
    profile_path = str(OUT / f"profile-order-{label}.txt") if profile else None
    stack = make_stack(OUT / f"stack-{label}", database_url, telemetry, profile_path, whatif,
                       order_replicas, extra_env)
    await stack.start(timeout=120)
    try:
        return await body(stack)
    finally:
        await stack.stop(grace=30)


def _cpu_table(shown: list[Phase]) -> str:
    groups = sorted({group for phase in shown for group in phase.cpu_ms}, key=lambda g: (g == "load client", g))
    head = "| phase | " + " | ".join(groups) + " | total |\n|---|" + "---|" * (len(groups) + 1)
    rows = [
        f"| {phase.name} | " + " | ".join(f"{phase.cpu_ms.get(g, 0.0):.2f}" for g in groups)
        + f" | **{phase.cpu_total_ms:.2f}** |"
        for phase in shown
    ]
    return "\n".join([head, *rows])


def _rounds_table(rounds: dict[str, list[Phase]]) -> str:
    lines = ["| phase | ok/s per round | p95 ms per round |", "|---|---|---|"]
    for runs in rounds.values():
        lines.append(
            f"| {runs[0].name} | {', '.join(f'{r.throughput:.0f}' for r in runs)} "
            f"| {', '.join(f'{r.p95_ms:.1f}' for r in runs)} |"
        )
    return "\n".join(lines)


def _rss_table(rounds: dict[str, list[Phase]]) -> tuple[str, float]:
    """Peak RSS per service over every stack and round, and the largest of them."""
    peaks: dict[str, float] = {}
    for runs in rounds.values():
        for phase in runs:
            for name, mb in phase.peak_rss_mb.items():
                peaks[name] = max(peaks.get(name, 0.0), mb)
    lines = ["| process | peak RSS MB |", "|---|---|"]
    lines += [f"| {name} | {mb:.0f} |" for name, mb in sorted(peaks.items())]
    services = [mb for name, mb in peaks.items() if name in ("identity", "payment") or name.startswith("order")]
    return "\n".join(lines), max(services, default=float("nan"))


def _skipped(args: argparse.Namespace) -> str:
    return ("" if args.durable else " --no-durable") + ("" if args.one_replica else " --no-one-replica")


def render_report(
    phases: dict[str, Phase], rounds: dict[str, list[Phase]], args: argparse.Namespace, started: datetime,
    load: tuple[float, float, float] = (float("nan"),) * 3,
) -> str:
    direct, saga, off = phases["direct"], phases["saga"], phases["saga_off"]
    p95_ratio = saga.p95_ms / direct.p95_ms
    p50_ratio = saga.p50_ms / direct.p50_ms
    cpu_ratio = saga.cpu_total_ms / direct.cpu_total_ms
    telemetry_cpu = saga.cpu_total_ms - off.cpu_total_ms
    telemetry_ratio = telemetry_cpu / direct.cpu_total_ms
    rss_table, peak_service_rss = _rss_table(rounds)
    checks = [
        (f"saga CPU per request <= {MAX_SAGA_TO_DIRECT_CPU:g} x direct call's (all processes)",
         cpu_ratio <= MAX_SAGA_TO_DIRECT_CPU,
         f"{cpu_ratio:.2f}x ({saga.cpu_total_ms:.2f} / {direct.cpu_total_ms:.2f} ms)"),
        (f"saga p95 <= {MAX_SAGA_TO_DIRECT_P95:g} x direct p95", p95_ratio <= MAX_SAGA_TO_DIRECT_P95,
         f"{p95_ratio:.2f}x ({saga.p95_ms:.0f} / {direct.p95_ms:.0f} ms)"),
        (f"telemetry CPU per saga (on - off, all processes) <= {MAX_TELEMETRY_TO_DIRECT_CPU:g} x one direct call",
         telemetry_ratio <= MAX_TELEMETRY_TO_DIRECT_CPU,
         f"{telemetry_ratio:.2f}x ({telemetry_cpu:.2f} / {direct.cpu_total_ms:.2f} ms)"),
        (f"peak RSS of each service <= {MAX_PEAK_RSS_MB:g} MB", peak_service_rss <= MAX_PEAK_RSS_MB,
         f"{peak_service_rss:.0f} MB (largest)"),
    ]
    shown = [direct, saga, off, *(phases[k] for k in ("saga_sampled", "saga_one_replica", "saga_durable")
                                  if k in phases)]
    rows = "\n".join(
        f"| {p.name} | {p.requests} | {p.concurrency} | {p.ok} | {p.errors} | {p.p50_ms:.1f} | {p.p95_ms:.1f} "
        f"| {p.p99_ms:.1f} | {p.throughput:.0f} |"
        for p in shown
    )
    extra_lines = []
    if "saga_sampled" in phases:
        sampled = phases["saga_sampled"]
        extra_lines.append(
            f"- with {args.sampled_ratio:.0%} head sampling (OTLP log records sampled alike, "
            f"`SAGASCOPE_LOG_EXPORT=sampled`): telemetry's CPU per saga "
            f"{sampled.cpu_total_ms - off.cpu_total_ms:.2f} ms "
            f"({(sampled.cpu_total_ms - off.cpu_total_ms) / direct.cpu_total_ms:.2f}x a direct call), "
            f"p95 {sampled.p95_ms:.0f} ms")
    if "saga_commenter" in phases:
        commented = phases["saga_commenter"]
        extra_lines.append(
            f"- with `ORDER_SQL_COMMENTER=1` (trace context in every statement and session): "
            f"{commented.throughput:.0f} sagas/s vs {saga.throughput:.0f}, p95 {commented.p95_ms:.0f} vs "
            f"{saga.p95_ms:.0f} ms, CPU per saga {commented.cpu_total_ms:.2f} vs {saga.cpu_total_ms:.2f} ms "
            f"(order {commented.cpu_ms.get('order', 0.0):.2f} vs {saga.cpu_ms.get('order', 0.0):.2f}, "
            f"PostgreSQL {commented.cpu_ms.get('postgres', 0.0):.2f} vs {saga.cpu_ms.get('postgres', 0.0):.2f})")
    if "saga_one_replica" in phases:
        one = phases["saga_one_replica"]
        extra_lines.append(
            f"- sagas/s with **1** order replica: **{one.throughput:.0f}**; with **{args.order_replicas}**: "
            f"**{saga.throughput:.0f}** (telemetry on)")
    if "saga_durable" in phases:
        durable = phases["saga_durable"]
        extra_lines.append(
            f"- PostgreSQL durable (`fsync=on`, `synchronous_commit=on`): {durable.throughput:.0f} sagas/s, "
            f"p95 {durable.p95_ms:.0f} ms, PostgreSQL CPU {durable.cpu_ms.get('postgres', 0.0):.2f} ms per saga; "
            f"fast (`fsync=off`): {saga.throughput:.0f} sagas/s, p95 {saga.p95_ms:.0f} ms")
    extra = "\n".join(extra_lines)
    verdicts = "\n".join(f"| {name} | {value} | {'met' if ok else '**missed**'} |" for name, ok, value in checks)
    errors = "\n".join(
        f"- {p.name}: {p.errors} errors, e.g. {', '.join(p.error_samples)}" for p in shown if p.errors
    ) or "- none"
    return f"""# Saga performance report

Generated by `make bench` (`benchmarks/bench_saga.py`) on {started:%Y-%m-%d %H:%M} UTC{
    f" with what-if patches `{args.whatif}` (benchmarks/whatif_order.py)" if args.whatif else ""}.

## Machine

- cores (`nproc`): **{os.cpu_count()}**; {platform.machine()}, Python {platform.python_version()}, {platform.system()}
- load average when the run started: **{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}** (1, 5, 15 min; the machine
  is shared, so a load above the core count means other work competed with every figure below)
- **{args.order_replicas} order service replica(s)** (one Python process uses one core; replicas share
  the saga log safely through leases; the client balances round robin), one payment, one identity
- orders on PostgreSQL (throwaway cluster from the installed binaries, `fsync=off`; the durable row uses a
  second cluster with `fsync=on`, `synchronous_commit=on`), payments on nx-27017 (the embedded
  MongoDB-wire server, SQLite-backed); services as local processes on loopback
- telemetry on = every span and log record exported, to local OTLP-JSON files (no collector), metrics on
  /metrics, the upstream gRPC and SQLAlchemy instrumentations
- the load generator (one asyncio process) runs on the same cores as the server processes,
  so every figure includes that contention

## Targets (ratios from this one run)

| target | measured | verdict |
|---|---|---|
{verdicts}

Throughput (reported, not a verdict: it follows the host's load): **{saga.throughput:.0f} sagas/s** with
telemetry on, {off.throughput:.0f} with it off; ≥ {EXPECTED_SAGAS_PER_SECOND:g}/s is expected on a quiet host.

## Figures

{args.requests} requests per phase after {args.warmup} warm-up requests, {args.concurrency} in flight,
{len(rounds["saga"])} round(s): the stacks take turns, and each row below is the phase's run with the
median throughput (every round's figures are under "Rounds").

| phase | requests | in flight | ok | errors | p50 ms | p95 ms | p99 ms | ok/s |
|---|---|---|---|---|---|---|---|---|
{rows}

Ratios:

- saga / direct-payment: CPU **{cpu_ratio:.2f}x**, p50 **{p50_ratio:.2f}x**, p95 **{p95_ratio:.2f}x**
- telemetry's CPU: {saga.cpu_total_ms:.2f} ms per saga across all processes with it on, {off.cpu_total_ms:.2f} ms
  with it off: **{telemetry_cpu:.2f} ms**, {telemetry_ratio:.2f}x one direct call ({direct.cpu_total_ms:.2f} ms)
{extra}

CPU milliseconds per request, by process (the same runs; order = all replicas):

{_cpu_table(shown)}

Peak resident memory (VmHWM) of every process, over all stacks and rounds:

{rss_table}

Rounds:

{_rounds_table(rounds)}

Errors:

{errors}

## Reproduce

```
make bench
# or, with other settings:
.venv/bin/python -m benchmarks.bench_saga --requests {args.requests} --concurrency {args.concurrency} \\
    --warmup {args.warmup} --rounds {args.rounds} --order-replicas {args.order_replicas} \\
    --sampled-ratio {args.sampled_ratio}{_skipped(args)}
# profile the order process with pyinstrument (writes benchmarks/out/profile-order-*.txt):
.venv/bin/python -m benchmarks.bench_saga --profile
```

Raw figures: `benchmarks/out/bench.json` (not committed).
"""


def median_run(runs: list[Phase]) -> Phase:
    """The run with the median throughput (the lower middle one of an even count)."""
    return sorted(runs, key=lambda phase: phase.throughput)[(len(runs) - 1) // 2]


async def bench_round(args: argparse.Namespace, database_url: str, durable_url: str | None) -> dict[str, Phase]:
    """One round: the telemetry-on stack (direct, then saga), the telemetry-off stack, the sampled one,
    one order replica, and the durable PostgreSQL cluster."""
    phases: dict[str, Phase] = {}

    async def with_telemetry(stack: LocalStack) -> list[Phase]:
        direct = await bench_direct_payment(stack, args.requests, args.concurrency, args.warmup)
        print(f"  {direct}", flush=True)
        saga = await bench_create_order("CreateOrder saga (telemetry on)", stack, args.requests,
                                        args.concurrency, args.warmup)
        print(f"  {saga}", flush=True)
        return [direct, saga]

    async def without_telemetry(stack: LocalStack) -> list[Phase]:
        off = await bench_create_order("CreateOrder saga (telemetry off)", stack, args.requests,
                                       args.concurrency, args.warmup)
        print(f"  {off}", flush=True)
        return [off]

    replicas = args.order_replicas
    print(f"bench: stack with telemetry on ({replicas} order replica(s))", flush=True)
    phases["direct"], phases["saga"] = await run_phase_stack(
        "telemetry-on", database_url, True, args.profile, with_telemetry, args.whatif, replicas)
    print("bench: stack with SAGASCOPE_TELEMETRY=off", flush=True)
    (phases["saga_off"],) = await run_phase_stack(
        "telemetry-off", database_url, False, args.profile, without_telemetry, args.whatif, replicas)
    if args.sampled_ratio > 0:
        async def sampled(stack: LocalStack) -> list[Phase]:
            phase = await bench_create_order(
                f"CreateOrder saga (telemetry on, {args.sampled_ratio:.0%} of traces and their logs sampled)", stack,
                args.requests, args.concurrency, args.warmup)
            print(f"  {phase}", flush=True)
            return [phase]

        print(f"bench: stack with OTEL_TRACES_SAMPLER=parentbased_traceidratio {args.sampled_ratio}, "
              "SAGASCOPE_LOG_EXPORT=sampled", flush=True)
        (phases["saga_sampled"],) = await run_phase_stack(
            "telemetry-sampled", database_url, True, False, sampled, args.whatif, replicas,
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
             "OTEL_TRACES_SAMPLER_ARG": str(args.sampled_ratio),
             "SAGASCOPE_LOG_EXPORT": "sampled"})

    if args.sql_commenter:
        async def commenter(stack: LocalStack) -> list[Phase]:
            phase = await bench_create_order("CreateOrder saga (telemetry on, ORDER_SQL_COMMENTER=1)", stack,
                                             args.requests, args.concurrency, args.warmup)
            print(f"  {phase}", flush=True)
            return [phase]

        print("bench: stack with telemetry on and ORDER_SQL_COMMENTER=1", flush=True)
        (phases["saga_commenter"],) = await run_phase_stack(
            "sql-commenter", database_url, True, False, commenter, args.whatif, replicas,
            {"ORDER_SQL_COMMENTER": "1"})

    def saga_only(name: str) -> Callable[[LocalStack], Awaitable[list[Phase]]]:
        async def body(stack: LocalStack) -> list[Phase]:
            phase = await bench_create_order(name, stack, args.requests, args.concurrency, args.warmup)
            print(f"  {phase}", flush=True)
            return [phase]

        return body

    if args.one_replica and replicas != 1:
        print("bench: stack with telemetry on, 1 order replica", flush=True)
        (phases["saga_one_replica"],) = await run_phase_stack(
            "one-replica", database_url, True, False, saga_only("CreateOrder saga (telemetry on, 1 order replica)"),
            args.whatif, 1)
    if durable_url is not None:
        print("bench: stack with telemetry on, PostgreSQL fsync=on synchronous_commit=on", flush=True)
        (phases["saga_durable"],) = await run_phase_stack(
            "durable", durable_url, True, False,
            saga_only("CreateOrder saga (telemetry on, PostgreSQL fsync=on, synchronous_commit=on)"),
            args.whatif, replicas)
    return phases


async def main_async(args: argparse.Namespace) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    reason = postgres.unavailable_reason()
    if reason:
        print(f"bench: cannot run: {reason}", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    load = os.getloadavg()
    rounds: dict[str, list[Phase]] = {}
    count = 1 if args.profile else args.rounds
    with contextlib.ExitStack() as clusters:
        database_url = clusters.enter_context(postgres.throwaway_cluster())
        durable_url = clusters.enter_context(postgres.throwaway_cluster(DURABLE_SETTINGS)) if args.durable else None
        for number in range(1, count + 1):
            print(f"bench: round {number}/{count}", flush=True)
            for key, phase in (await bench_round(args, database_url, durable_url)).items():
                rounds.setdefault(key, []).append(phase)
    phases = {key: median_run(runs) for key, runs in rounds.items()}
    args.out_json.write_text(json.dumps({k: [asdict(v) for v in runs] for k, runs in rounds.items()}, indent=2))
    report = render_report(phases, rounds, args, started, load)
    if args.write_report:
        appendix = args.append or (FINDINGS if FINDINGS.exists() else None)
        REPORT.write_text(report + ("\n" + appendix.read_text() if appendix else ""))
        print(f"bench: wrote {REPORT.relative_to(ROOT)}")
    print(report)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3,
                        help="repeat every phase this many times, alternating the stacks, and report the "
                        "run with the median throughput (this machine is shared and noisy)")
    parser.add_argument("--profile", action="store_true", help="run the order process under pyinstrument")
    parser.add_argument("--no-report", dest="write_report", action="store_false",
                        help="print the report, do not rewrite benchmarks/REPORT.md")
    parser.add_argument("--whatif", default="", help="order process under benchmarks.whatif_order with these "
                        "patches (no_sql_spans): measures a proposed change without editing services/")
    parser.add_argument("--order-replicas", type=int, default=2,
                        help="order service replicas (one Python process uses one core; they share the saga "
                        "log safely through leases); clients balance round robin")
    parser.add_argument("--sampled-ratio", type=float, default=0.1,
                        help="also measure telemetry on with this head-sampling ratio, OTLP log records sampled "
                        "alike (SAGASCOPE_LOG_EXPORT=sampled); 0 = skip")
    parser.add_argument("--no-one-replica", dest="one_replica", action="store_false",
                        help="skip the stack with one order replica (sagas/s with 1 vs 2 replicas)")
    parser.add_argument("--no-durable", dest="durable", action="store_false",
                        help="skip the stack on a PostgreSQL cluster with fsync and synchronous_commit on")
    parser.add_argument("--sql-commenter", action="store_true",
                        help="also a stack with ORDER_SQL_COMMENTER=1 (the trace context sent to PostgreSQL)")
    parser.add_argument("--out-json", type=Path, default=OUT / "bench.json")
    parser.add_argument("--append", type=Path, help="markdown appended to the report (e.g. profiling notes)")
    args = parser.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
