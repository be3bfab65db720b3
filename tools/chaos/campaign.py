"""The campaign from start to verdict: environment up, workload and faults together, recovery, audit,
report. Exit status 0 only with zero violations, every fault kind injected and confirmed, convergence
in time, and goodput above its bars (tools.chaos.goodput).

Settings come from flags, else CHAOS_* variables (what `make chaos` passes), else defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from sagascope.order.database import async_url
from sagascope.order.tables import orders
from sagascope.payment.domain import limit_minor
from sagascope.saga.store import saga_instances
from tests.support import ferretdb
from tests.support import postgres as pg_support
from tools.chaos import report
from tools.chaos.auditor import TERMINAL_ORDER, TERMINAL_SAGA, audit, read_facts, read_payments
from tools.chaos.environment import Environment, ServiceTuning
from tools.chaos.goodput import measure
from tools.chaos.injector import Gate, Injector, ToxicSettings
from tools.chaos.logs import error_causes, timelines
from tools.chaos.schedule import all_kinds, build_schedule, clean_tail_from
from tools.chaos.toxiproxy import server_binary
from tools.chaos.workload import Clients, build_workload, run_workload

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REPORT = ROOT / "benchmarks" / "chaos" / "REPORT.md"
RAW_DIR = ROOT / "benchmarks" / "out" / "chaos"
TIMELINES_SHOWN = 4


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__)
    parser.add_argument("--sagas", type=int, default=_env_int("CHAOS_SAGAS", 2000))
    parser.add_argument("--seed", type=int, default=_env_int("CHAOS_SEED", 7))
    parser.add_argument("--concurrency", type=int, default=_env_int("CHAOS_CONCURRENCY", 12))
    parser.add_argument("--report", type=Path, default=Path(os.environ.get("CHAOS_REPORT") or DEFAULT_REPORT))
    parser.add_argument("--client-timeout", type=float, default=20.0, help="each CreateOrder's deadline, seconds")
    parser.add_argument("--converge-timeout", type=float,
                        default=float(os.environ.get("CHAOS_CONVERGE_SECONDS") or 150))
    parser.add_argument("--telemetry", choices=("on", "off"), default=os.environ.get("CHAOS_TELEMETRY") or "on")
    parser.add_argument("--mongo", choices=("nx-27017", "ferretdb"),
                        default=os.environ.get("CHAOS_MONGO") or "nx-27017",
                        help="payment's MongoDB-wire server (ferretdb: `make ferretdb-install` first)")
    parser.add_argument("--state-dir", type=Path, default=ROOT / "var" / "chaos")
    return parser.parse_args(argv)


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


async def unfinished(database_url: str) -> tuple[int, int]:
    """(sagas not terminal, orders not terminal), read from PostgreSQL directly."""
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.connect() as connection:
            sagas = (await connection.execute(
                select(func.count()).where(saga_instances.c.status.not_in(sorted(TERMINAL_SAGA)))
            )).scalar_one()
            open_orders = (await connection.execute(
                select(func.count()).where(orders.c.status.not_in(sorted(TERMINAL_ORDER)))
            )).scalar_one()
    finally:
        await engine.dispose()
    return int(sagas), int(open_orders)


async def wait_converged(env: Environment, bound_s: float, say: Callable[[str], None]) -> float | None:
    """Seconds until nothing is left unfinished and stays so, with the payments no longer changing
    (two reads 2 s apart); None if that does not happen within ``bound_s``."""
    started = time.monotonic()
    settled_since: float | None = None
    last_payments = -1
    while time.monotonic() - started < bound_s:
        try:
            sagas, open_orders = await unfinished(env.database_url)
            payments = len(await read_payments(env.mongo_url))
        except Exception as exc:  # a database still coming back: keep waiting
            say(f"convergence check failed ({type(exc).__name__}: {exc}); retrying")
            sagas, open_orders, payments = -1, -1, -1
        quiet = sagas == 0 and open_orders == 0
        if quiet and settled_since is not None and payments == last_payments:
            return round(settled_since - started, 1)
        if quiet:
            settled_since = time.monotonic()  # first quiet read, or payments still changing
        else:
            settled_since = None
            say(f"waiting for recovery: {sagas} saga(s), {open_orders} order(s) unfinished")
        last_payments = payments
        await asyncio.sleep(2.0)
    return None


async def run(args: argparse.Namespace) -> report.CampaignResult:
    t0 = time.monotonic()

    def clock() -> float:
        return round(time.monotonic() - t0, 2)

    def say(message: str) -> None:
        print(f"[chaos {clock():7.1f}s] {message}", flush=True)

    tuning = ServiceTuning(telemetry=args.telemetry == "on")
    schedule = build_schedule(args.seed, args.sagas)
    plans = build_workload(args.seed, args.sagas)
    say(f"seed {args.seed}: {args.sagas} sagas, {len(schedule)} faults scheduled; building toxiproxy (cached)")
    binary = await asyncio.to_thread(server_binary)
    env = Environment(args.state_dir, tuning, binary, say, mongo=args.mongo)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    commit = _commit()
    clients: Clients | None = None
    try:
        await env.start()
        say(f"environment up (logs in {env.logs} and {env.state_dir / 'stack' / 'logs'})")
        clients = await Clients.open(env.stack.order_target, env.stack.identity_target)
        gate = Gate(schedule, clean_tail_from(args.sagas), tuning.settle_s)
        injector = Injector(env, gate, ToxicSettings(tuning.payment_timeout_s, tuning.lease_s), clock, say)
        faults_task = asyncio.create_task(injector.run())
        replies = await run_workload(plans, clients, args.concurrency, args.client_timeout, gate.admit,
                                     progress=lambda n: say(f"{n}/{args.sagas} sagas issued"), clock=clock)
        workload_end = clock()
        say(f"workload done: {len(replies)} replies")
        faults = await faults_task
        faults_end = max((f.ended_s for f in faults), default=clock())  # the last fault healed
        restarted = await env.ensure_running()
        say("faults stopped; waiting for recovery")
        quiet_from = clock()
        converged = await wait_converged(env, args.converge_timeout, say)
        converged_at = None if converged is None else round(quiet_from + converged, 1)
        say(f"converged after {converged} s" if converged is not None else "did NOT converge")
        facts = await read_facts(env.database_url, env.mongo_url)
        limit = limit_minor(int(os.environ.get("PAYMENT_LIMIT_MAJOR") or 1000), "EUR")
        violations = audit(facts, replies, limit)
    finally:
        if clients is not None:
            await clients.close()
        await env.stop()
    service_logs = env.state_dir / "stack" / "logs"
    violating = sorted({m for v in violations for m in re.findall(r"ord_[0-9a-f]+", v.subject)})
    command = (f"make chaos CHAOS_SAGAS={args.sagas} CHAOS_SEED={args.seed} CHAOS_CONCURRENCY={args.concurrency}"
               + (f" CHAOS_TELEMETRY={args.telemetry}" if args.telemetry != "on" else "")
               + (f" CHAOS_MONGO={args.mongo}" if args.mongo != "nx-27017" else ""))
    return report.CampaignResult(
        seed=args.seed, sagas=args.sagas, concurrency=args.concurrency, client_timeout_s=args.client_timeout,
        tuning=tuning, command=command, started_at=started_at,
        host=f"{platform.node()} ({os.cpu_count()} CPUs, shared)", commit=commit, plans=plans, faults=faults,
        replies=replies, facts=facts, violations=violations, workload_end_s=workload_end, faults_end_s=faults_end,
        converged_s=converged, converged_at_s=converged_at, converge_bound_s=args.converge_timeout, total_s=clock(),
        restarted_at_end=restarted, limit_minor=limit,
        goodput=measure(plans, replies, faults, facts.orders, limit, tuning.settle_s, all_kinds()),
        error_causes=error_causes(service_logs),
        timelines=timelines(service_logs, set(violating[:TIMELINES_SHOWN])), mongo=args.mongo,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reason = pg_support.unavailable_reason() or (ferretdb.unavailable_reason() if args.mongo == "ferretdb" else None)
    if reason:  # never pass silently: say why the campaign cannot run, and fail
        print(f"chaos: cannot run: {reason}", file=sys.stderr)
        return 2
    result = asyncio.run(run(args))
    raw = RAW_DIR / f"chaos-{args.seed}-{args.sagas}{'-ferretdb' if args.mongo == 'ferretdb' else ''}.json"
    report.write(result, args.report, raw)
    print(report.render(result).split("\n## Faults injected")[0])
    for violation in result.violations[:20]:
        print(f"  VIOLATION {violation.check}: {violation.subject}: {violation.detail}")
    print(f"report: {args.report}  raw: {raw}")
    for failure in result.goodput.failures:
        print(f"  GOODPUT {failure}")
    checks = len(result.violations)
    print(f"chaos: {'PASSED' if result.passed else 'FAILED'} ({checks} violation(s), "
          f"{len(result.fault_errors)} fault error(s), {len(result.unconfirmed)} unconfirmed, "
          f"{len(result.missing_kinds)} kind(s) never confirmed, fault-free goodput "
          f"{result.goodput.fault_free.percent} of {result.goodput.fault_free.orders})")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
