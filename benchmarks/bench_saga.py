"""`make bench`: ProcessPayment direct vs the CreateOrder saga vs the saga with telemetry off, on PostgreSQL.

    .venv/bin/python -m benchmarks.bench_saga [--requests 2000] [--concurrency 16] [--rounds 5] [--profile]

One machine, side by side:
  (0) the floor: an empty grpcio aio unary call (benchmarks/empty_grpc.py: no telemetry, no
      database), client and server CPU per call and calls/s;
  (a) payment-service ProcessPayment called directly (as the order-service account);
  (b) order-service CreateOrder — the whole saga: reserve (PostgreSQL) -> ProcessPayment -> confirm;
  (c) (b) again after restarting the stack with SAGASCOPE_TELEMETRY=off;
  (d) (b) with 10 % head sampling (``--sampled-ratio``), (e) with one order replica instead of
      two, (f) on a second PostgreSQL cluster with the durable settings (fsync and
      synchronous_commit on) instead of the fast throwaway ones (fsync off).

Every stack also reports each service's peak RSS (the kernel's VmHWM).

Each phase sends a fixed number of requests with a fixed number in flight (asyncio,
one channel) after a warm-up, and records p50/p95 latency, throughput and the CPU
every process spent per request. The stacks take turns for ``--rounds`` rounds; each
target's verdict is the median of its per-round ratios (benchmarks/verdicts.py), and
the report shows every round's ratio: this shared machine swings by up to a third
between hours, a ratio within one round much less. The
services run as local processes (sagascope.local.services.LocalStack) on free
loopback ports, orders on a throwaway PostgreSQL cluster (tests/support/postgres.py),
payments on nx-27017. Telemetry "on" means the default local set-up: no
OTEL_EXPORTER_OTLP_ENDPOINT, so spans and logs go to OTLP-JSON files under the
stack's state directory, and metrics are served on /metrics.

After the rounds, one more telemetry-on saga phase runs with py-spy attached to every
service (benchmarks/layers.py) and the report splits each process's CPU per saga by
layer (gRPC, SQL, MongoDB, telemetry SDK, our code, ...); ``--no-layers`` skips it.

--profile wraps the order process in pyinstrument (benchmarks only; services/
are untouched) and writes benchmarks/out/profile-order-<phase>.txt.

Writes benchmarks/REPORT.md (figures, ratios, targets, machine, commands) and
benchmarks/out/bench.json (raw: each phase a list of rounds). The load generator
shares the machine's cores with the services; the report says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
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

from benchmarks import empty_grpc, layers
from benchmarks.verdicts import Verdict, floor_units, median_by_process, verdicts
from sagascope.api.orders.v1 import orders_pb2
from sagascope.api.payments.v1 import payments_pb2, payments_pb2_grpc
from sagascope.cli.client import OrderClient, login, order_request
from sagascope.local.services import LocalStack, Ports
from tests.support import postgres

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
REPORT = ROOT / "benchmarks" / "REPORT.md"

# The targets (issue 19) and their verdicts: benchmarks/verdicts.py.
# --env KEY=VALUE: set for every service of every stack (an A/B of a setting, run by run).
BENCH_ENV: dict[str, str] = {}
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
        peak = _vm_hwm_mb(managed.process.pid) if managed.process is not None else None
        if peak is not None:
            peaks[name] = peak
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
        **BENCH_ENV,
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


def _process_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _vm_hwm_mb(pid: int) -> float | None:
    """A process's peak resident set (the kernel's high-water mark, VmHWM) in MB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


async def bench_floor(requests: int, concurrency: int, warmup: int) -> Phase:
    """The floor: an empty grpcio aio unary call to benchmarks/empty_grpc.py (its own process, the
    services' runtime, no telemetry, no database), driven like the real calls; CPU of the server
    and of this load client per call."""
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.empty_grpc", cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
        if not line.startswith("port "):
            raise RuntimeError(f"benchmarks.empty_grpc did not start (said {line!r})")
        server_process = psutil.Process(server.pid)

        def probe() -> dict[str, float]:
            return {"empty server": _process_seconds(server_process), "load client": _process_seconds(psutil.Process())}

        async with grpc.aio.insecure_channel(f"127.0.0.1:{line.split()[1]}") as channel:
            empty = channel.unary_unary(empty_grpc.METHOD)

            async def call(i: int) -> str | None:
                try:
                    await empty(b"", timeout=30)
                except grpc.aio.AioRpcError as exc:
                    return exc.code().name
                return None

            phase = await drive("empty grpcio aio unary call (the floor)", call, requests, concurrency, warmup, probe)
        peak = _vm_hwm_mb(server.pid)
        phase.peak_rss_mb = {"empty server": peak} if peak is not None else {}
        return phase
    finally:
        if server.returncode is None:
            server.terminate()
        await server.wait()


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


SHOWN = ("floor", "direct", "saga", "saga_off", "saga_sampled", "saga_one_replica", "saga_durable")
Load = tuple[float, float, float]


def _groups(names: list[str]) -> list[str]:
    return sorted(set(names), key=lambda g: (g == "load client", g))


def _cpu_table(rounds: dict[str, list[Phase]]) -> str:
    """Each process's median CPU ms per request over the rounds, per phase."""
    shown = [key for key in SHOWN if key in rounds]
    medians = {key: median_by_process([asdict(run) for run in rounds[key]]) for key in shown}
    groups = _groups([g for key in shown for g in medians[key]])
    head = "| phase | " + " | ".join(groups) + " | total |\n|---|" + "---|" * (len(groups) + 1)
    rows = [
        f"| {rounds[key][0].name} | " + " | ".join(f"{medians[key].get(g, 0.0):.2f}" for g in groups)
        + f" | **{statistics.median(run.cpu_total_ms for run in rounds[key]):.2f}** |"
        for key in shown
    ]
    return "\n".join([head, *rows])


def _rounds_table(rounds: dict[str, list[Phase]], loads: list[Load]) -> str:
    lines = ["| phase | CPU ms per request, all processes | p95 ms | ok/s |", "|---|---|---|---|"]
    for key in (k for k in SHOWN if k in rounds):
        runs = rounds[key]
        lines.append(
            f"| {runs[0].name} | {', '.join(f'{r.cpu_total_ms:.2f}' for r in runs)} "
            f"| {', '.join(f'{r.p95_ms:.1f}' for r in runs)} | {', '.join(f'{r.throughput:.0f}' for r in runs)} |"
        )
    starts = ", ".join(f"{load[0]:.2f}" for load in loads)
    lines.append(f"| load average (1 min) at each round's start | {starts} | | |")
    return "\n".join(lines)


def _rss_table(rounds: dict[str, list[Phase]]) -> str:
    """Peak RSS per process over every stack and round."""
    peaks: dict[str, float] = {}
    for runs in rounds.values():
        for phase in runs:
            for name, mb in phase.peak_rss_mb.items():
                peaks[name] = max(peaks.get(name, 0.0), mb)
    lines = ["| process | peak RSS MB |", "|---|---|"]
    lines += [f"| {name} | {mb:.0f} |" for name, mb in sorted(peaks.items())]
    return "\n".join(lines)


def _verdict_table(found: list[Verdict]) -> str:
    lines = ["| target | bound | median of the rounds | range | each round | verdict |", "|---|---|---|---|---|---|"]
    for v in found:
        unit = v.target.unit
        fmt = "{:.0f}" if unit.strip() == "MB" else "{:.2f}"
        lines.append(
            f"| {v.target.label} | {v.target.bound} | **{fmt.format(v.median)}{unit}** "
            f"| {fmt.format(v.low)}-{fmt.format(v.high)}{unit} | {', '.join(fmt.format(x) for x in v.per_round)} "
            f"| {'met' if v.met else '**missed**'} |"
        )
    return "\n".join(lines)


def _floor_section(rounds: dict[str, list[Phase]]) -> str:
    """The floor's figures, the saga and the direct call in floor units, and the saga's CPU by process
    against the least its RPC legs can cost."""
    if "floor" not in rounds:
        return "The floor was not measured in this run (`--no-floor`).\n"
    raw = {key: [asdict(run) for run in runs] for key, runs in rounds.items()}
    floor = median_by_process(raw["floor"])
    unit = statistics.median(run.cpu_total_ms for run in rounds["floor"])
    client, server = floor.get("load client", 0.0), floor.get("empty server", 0.0)
    saga_units, direct_units = floor_units(raw, "saga"), floor_units(raw, "direct")
    saga = median_by_process(raw["saga"])
    direct = median_by_process(raw["direct"])
    # The least each process must spend: a saga is two RPCs (load client -> order, order -> payment),
    # so the load client runs one client side, order one server and one client side, payment one
    # server side; a direct call is one client side (load client) and one server side (payment).
    saga_floor = {"load client": client, "order": server + client, "payment": server}
    direct_floor = {"load client": client, "payment": server}
    each_round = ", ".join(f"{r.cpu_total_ms:.3f} ms / {r.throughput:.0f}/s" for r in rounds["floor"])
    lines = [
        "An empty grpcio aio unary call (`benchmarks/empty_grpc.py`, its own process on the services' runtime, "
        "no telemetry, no database), driven from the same load client with the same calls in flight, each round: "
        f"**{unit:.3f} ms** of CPU per call (median; client {client:.3f}, server {server:.3f}), "
        f"**{statistics.median(r.throughput for r in rounds['floor']):.0f} calls/s** (rounds: {each_round}).",
        "",
        f"- a saga costs **{statistics.median(saga_units):.1f} floor calls** of CPU "
        f"(rounds {min(saga_units):.1f}-{max(saga_units):.1f}); its least is 2 (two RPCs, no work)",
        f"- a direct `ProcessPayment` costs **{statistics.median(direct_units):.1f} floor calls** "
        f"(rounds {min(direct_units):.1f}-{max(direct_units):.1f}); its least is 1",
        "",
        "Where a saga's CPU goes, by process (medians over the rounds, ms per request; *floor part* = the client "
        "and server sides of empty calls that process must run: load client 1 client side, order 1 server + 1 "
        "client side, payment 1 server side):",
        "",
        "| process | saga | floor part | above the floor | direct call | its floor part | above |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in _groups([*saga, *direct]):
        s, d = saga.get(name, 0.0), direct.get(name, 0.0)
        sf, df = saga_floor.get(name, 0.0), direct_floor.get(name, 0.0)
        lines.append(f"| {name} | {s:.2f} | {sf:.2f} | {s - sf:.2f} | {d:.2f} | {df:.2f} | {d - df:.2f} |")
    total_s, total_d = sum(saga.values()), sum(direct.values())
    lines.append(
        f"| **all** | **{total_s:.2f}** | {2 * unit:.2f} | **{total_s - 2 * unit:.2f}** | **{total_d:.2f}** "
        f"| {unit:.2f} | **{total_d - unit:.2f}** |"
    )
    return "\n".join(lines) + "\n"


@dataclass
class LayerProfile:
    """One telemetry-on saga phase with py-spy on every service: CPU per process and layer."""

    phase: Phase
    # process group -> layer -> CPU seconds (each thread's kernel-charged CPU split by its samples)
    cpu_seconds: dict[str, dict[str, float]]
    sampled: dict[str, int]  # process group -> busy py-spy samples

    def ms_per_saga(self) -> dict[str, dict[str, float]]:
        """Each layer's share of a process's CPU in the profiled phase times that process's CPU per saga."""
        return {
            group: {layer: share * self.phase.cpu_ms.get(group, 0.0) for layer, share in layers.shares(counts).items()}
            for group, counts in self.cpu_seconds.items()
        }


def _layers_section(profile: LayerProfile | None) -> str:
    if profile is None:
        return "Not profiled in this run (`--no-layers`).\n"
    ms = profile.ms_per_saga()
    groups = sorted(ms, key=lambda g: (not g.startswith("order"), g))
    head = "| layer | " + " | ".join(groups) + " | all |\n|---|" + "---|" * (len(groups) + 1)
    rows = []
    for layer in layers.LAYER_NAMES:
        values = [ms[g].get(layer, 0.0) for g in groups]
        if any(values):
            rows.append(f"| {layer} | " + " | ".join(f"{v:.2f}" for v in values) + f" | **{sum(values):.2f}** |")
    cpu = [profile.phase.cpu_ms.get(g, 0.0) for g in groups]
    rows.append("| **process CPU per saga** | " + " | ".join(f"**{v:.2f}**" for v in cpu) + f" | **{sum(cpu):.2f}** |")
    samples = ", ".join(f"{g} {profile.sampled.get(g, 0)}" for g in groups)
    return "\n".join([
        "py-spy at 200 Hz (`--nonblocking`, on-CPU threads) on every service during one more telemetry-on saga "
        f"phase ({profile.phase.requests} sagas, {profile.phase.throughput:.0f}/s while sampled; busy samples: "
        f"{samples}); each sample given to its innermost frame's layer (`benchmarks/layers.py`), each thread's "
        "CPU as the kernel charged it (`/proc/<pid>/task/*/stat`) split over its samples' layers — gRPC core's own "
        "threads, which py-spy cannot see, go to the native layer — and the layer's share of the process times its "
        "measured CPU per saga, ms:",
        "",
        head, *rows,
        "",
        "Raw stacks: `benchmarks/out/layers/py-spy-<process>.txt`. PostgreSQL's backends (C) are not sampled: "
        f"{profile.phase.cpu_ms.get('postgres', 0.0):.2f} ms per saga in this phase, all of it SQL.",
    ]) + "\n"


def _skipped(args: argparse.Namespace) -> str:
    return (("" if args.durable else " --no-durable") + ("" if args.one_replica else " --no-one-replica")
            + ("" if args.floor else " --no-floor") + ("" if args.layers else " --no-layers"))


def render_report(
    rounds: dict[str, list[Phase]], args: argparse.Namespace, started: datetime, loads: list[Load],
    profile: LayerProfile | None = None,
) -> str:
    """``loads``: the load average at each round's start, then at the end of the run."""
    raw = {key: [asdict(run) for run in runs] for key, runs in rounds.items()}
    found = verdicts(raw)
    phases = {key: median_run(runs) for key, runs in rounds.items()}
    saga, off = phases["saga"], phases["saga_off"]
    shown = [phases[key] for key in SHOWN if key in phases]
    rows = "\n".join(
        f"| {p.name} | {p.requests} | {p.concurrency} | {p.ok} | {p.errors} | {p.p50_ms:.1f} | {p.p95_ms:.1f} "
        f"| {p.p99_ms:.1f} | {p.throughput:.0f} |"
        for p in shown
    )
    on_cpu = statistics.median(run.cpu_total_ms for run in rounds["saga"])
    off_cpu = statistics.median(run.cpu_total_ms for run in rounds["saga_off"])
    extra_lines = []
    if "saga_sampled" in rounds:
        pairs = list(zip(rounds["saga_sampled"], rounds["saga_off"], rounds["direct"], strict=False))
        sampled = [run.cpu_total_ms - o.cpu_total_ms for run, o, _ in pairs]
        ratios = [(run.cpu_total_ms - o.cpu_total_ms) / d.cpu_total_ms for run, o, d in pairs]
        extra_lines.append(
            f"- with {args.sampled_ratio:.0%} head sampling (OTLP log records sampled alike, "
            f"`SAGASCOPE_LOG_EXPORT=sampled`): telemetry's CPU per saga {statistics.median(sampled):.2f} ms "
            f"({statistics.median(ratios):.2f}x a direct call; medians of the rounds)")
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
    errors = "\n".join(
        f"- {p.name}: {p.errors} errors, e.g. {', '.join(p.error_samples)}"
        for runs in rounds.values() for p in runs if p.errors
    ) or "- none"
    first, last = loads[0], loads[-1]
    whatif = f" with what-if patches `{args.whatif}` (benchmarks/whatif_order.py)" if args.whatif else ""
    return f"""# Saga performance report

Generated by `make bench` (`benchmarks/bench_saga.py`) on {started:%Y-%m-%d %H:%M} UTC{whatif}.

## Machine

- cores (`nproc`): **{os.cpu_count()}**; {platform.machine()}, Python {platform.python_version()}, {platform.system()}
- load average (1, 5, 15 min) when the run started: **{first[0]:.2f} {first[1]:.2f} {first[2]:.2f}**, when it
  ended: **{last[0]:.2f} {last[1]:.2f} {last[2]:.2f}** (each round's start is under "Rounds"; the machine is
  shared, so a load above the core count means other work competed with every figure below)
- **{args.order_replicas} order service replica(s)** (one Python process uses one core; replicas share
  the saga log safely through leases; the client balances round robin), one payment, one identity
- orders on PostgreSQL (throwaway cluster from the installed binaries, `fsync=off`; the durable row uses a
  second cluster with `fsync=on`, `synchronous_commit=on`), payments on nx-27017 (the embedded
  MongoDB-wire server, SQLite-backed) through PyMongo's async API; services as local processes on loopback
- telemetry on = every span and log record exported, to local OTLP-JSON files (no collector), metrics on
  /metrics, the upstream gRPC, SQLAlchemy and pymongo instrumentations
- the load generator (one asyncio process) runs on the same cores as the server processes,
  so every figure includes that contention

## Targets

Each verdict is the **median of the per-round ratios** ({len(found[0].per_round)} rounds; within a round the
phases run one after another, so each ratio compares figures taken minutes apart). `benchmarks/verdicts.py`
computes them from `benchmarks/out/bench.json`.

{_verdict_table(found)}

Throughput: **{saga.throughput:.0f} sagas/s** with telemetry on, {off.throughput:.0f} with it off
(each phase's median-throughput round).

## The floor

{_floor_section(rounds)}
## By layer

{_layers_section(profile)}
## Figures

{args.requests} requests per phase ({args.floor_requests} for the floor) after {args.warmup} warm-up requests,
{args.concurrency} in flight, {len(rounds["saga"])} round(s): the stacks take turns, and each row below is the
phase's round with the median throughput (every round's figures are under "Rounds").

| phase | requests | in flight | ok | errors | p50 ms | p95 ms | p99 ms | ok/s |
|---|---|---|---|---|---|---|---|---|
{rows}

- telemetry's CPU: {on_cpu:.2f} ms per saga across all processes with it on, {off_cpu:.2f} ms with it off
  (medians of the rounds)
{extra}

CPU milliseconds per request, by process (median of the rounds; order = all replicas):

{_cpu_table(rounds)}

Peak resident memory (VmHWM) of every process, over all stacks and rounds:

{_rss_table(rounds)}

## Rounds

{_rounds_table(rounds, loads[:-1])}

Errors:

{errors}

## Reproduce

```
flock /tmp/sagascope-ports.lock make bench
# or, with other settings:
.venv/bin/python -m benchmarks.bench_saga --requests {args.requests} --concurrency {args.concurrency} \\
    --warmup {args.warmup} --rounds {args.rounds} --order-replicas {args.order_replicas} \\
    --sampled-ratio {args.sampled_ratio}{_skipped(args)}
# profile the order process with pyinstrument (writes benchmarks/out/profile-order-*.txt):
.venv/bin/python -m benchmarks.bench_saga --profile
```

Raw figures: `benchmarks/out/bench.json` (not committed): each phase a list of rounds with `cpu_ms` per
process, `p95_ms`, `throughput` and `peak_rss_mb`. What each change bought, and every run's figures:
[FINDINGS.md](FINDINGS.md).
"""


def median_run(runs: list[Phase]) -> Phase:
    """The run with the median throughput (the lower middle one of an even count)."""
    return sorted(runs, key=lambda phase: phase.throughput)[(len(runs) - 1) // 2]


async def profile_layers(args: argparse.Namespace, database_url: str) -> LayerProfile:
    """One more telemetry-on saga phase, every service (and nx-27017) under py-spy."""
    cpu_seconds: dict[str, dict[str, float]] = {}
    sampled: dict[str, int] = {}

    async def body(stack: LocalStack) -> list[Phase]:
        await bench_create_order("warm-up", stack, args.warmup, args.concurrency, 0)
        pids = {name: managed.process.pid for name, managed in stack.processes.items()
                if managed.process is not None and name != "identity"}
        (OUT / "layers").mkdir(parents=True, exist_ok=True)
        async with layers.recording(pids, OUT / "layers") as files:
            phase = await bench_create_order("CreateOrder saga (telemetry on, py-spy attached)", stack,
                                             args.requests, args.concurrency, 0)
        for name, path in files.items():
            group = "order" if name.startswith("order") else name
            counts = cpu_seconds.setdefault(group, {})
            per_thread = layers.thread_layer_counts(path.read_text().splitlines())
            sampled[group] = sampled.get(group, 0) + sum(sum(c.values()) for c in per_thread.values())
            thread_cpu = {int(k): v for k, v in json.loads((path.parent / f"threads-{name}.json").read_text()).items()}
            found = layers.cpu_weighted(per_thread, thread_cpu)
            if group == "mongo":  # nx-27017 is the MongoDB server: all of its work is the MongoDB layer
                found = {"MongoDB": sum(found.values())}
            for layer, seconds in found.items():
                counts[layer] = counts.get(layer, 0.0) + seconds
        print(f"  {phase}", flush=True)
        return [phase]

    print("bench: profiling by layer (py-spy on every service, telemetry on)", flush=True)
    (phase,) = await run_phase_stack("layers", database_url, True, False, body, args.whatif, args.order_replicas)
    return LayerProfile(phase, cpu_seconds, sampled)


async def bench_round(args: argparse.Namespace, database_url: str, durable_url: str | None) -> dict[str, Phase]:
    """One round: the floor, the telemetry-on stack (direct, then saga), the telemetry-off stack, the
    sampled one, one order replica, and the durable PostgreSQL cluster."""
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

    if args.floor:
        print("bench: the floor (an empty grpcio aio unary call)", flush=True)
        phases["floor"] = await bench_floor(args.floor_requests, args.concurrency, args.warmup)
        print(f"  {phases['floor']}", flush=True)
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
    loads: list[Load] = []
    rounds: dict[str, list[Phase]] = {}
    count = 1 if args.profile else args.rounds
    profile: LayerProfile | None = None
    with contextlib.ExitStack() as clusters:
        database_url = clusters.enter_context(postgres.throwaway_cluster())
        durable_url = clusters.enter_context(postgres.throwaway_cluster(DURABLE_SETTINGS)) if args.durable else None
        for number in range(1, count + 1):
            loads.append(os.getloadavg())
            print(f"bench: round {number}/{count} (load average {loads[-1][0]:.2f})", flush=True)
            for key, phase in (await bench_round(args, database_url, durable_url)).items():
                rounds.setdefault(key, []).append(phase)
            # Raw figures after every round, so an interrupted run leaves what it measured.
            args.out_json.write_text(json.dumps({k: [asdict(v) for v in runs] for k, runs in rounds.items()},
                                                indent=2))
        if args.layers and not args.profile:
            profile = await profile_layers(args, database_url)
    loads.append(os.getloadavg())
    report = render_report(rounds, args, started, loads, profile)
    if args.write_report:
        REPORT.write_text(report + ("\n" + args.append.read_text() if args.append else ""))
        print(f"bench: wrote {REPORT.relative_to(ROOT)}")
    print(report)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5,
                        help="repeat every phase this many times, alternating the stacks; each verdict is the "
                        "median of the per-round ratios (this machine is shared and noisy)")
    parser.add_argument("--floor-requests", type=int, default=10000,
                        help="empty calls per round for the floor (they are short, so more of them)")
    parser.add_argument("--no-floor", dest="floor", action="store_false", help="skip the floor")
    parser.add_argument("--no-layers", dest="layers", action="store_false",
                        help="skip the py-spy profile by layer after the rounds")
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
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for every service of every stack (repeatable)")
    parser.add_argument("--sql-commenter", action="store_true",
                        help="also a stack with ORDER_SQL_COMMENTER=1 (the trace context sent to PostgreSQL)")
    parser.add_argument("--out-json", type=Path, default=OUT / "bench.json")
    parser.add_argument("--append", type=Path, help="markdown appended to the report (e.g. profiling notes)")
    args = parser.parse_args()
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--env takes KEY=VALUE, got {item!r}")
        BENCH_ENV[key] = value
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
