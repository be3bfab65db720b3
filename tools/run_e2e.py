"""``make e2e``: the real backends, the services pointed at them, the demo, a short load, then
tests/e2e asserts against Jaeger's, Elasticsearch's and Prometheus's own APIs.

One supervisor (sagascope.local) runs it all: the backends from the same config files as
docker compose, the services exporting OTLP to the collector, which scrapes their /metrics and
remote-writes to Prometheus. Two phases, the other backends running throughout:

1. the base collector config (+ the file_log path beside OTLP, into a second data stream):
   every test in tests/e2e but the production profile's;
2. the collector restarted with profiles/production.yml (tail sampling), a load of
   E2E_PRODUCTION_ORDERS orders with injected compensations, then test_production_profile.py.

Where the built collector has the postgresql receiver, orders are on a throwaway PostgreSQL
cluster with pg_stat_statements preloaded (the installed server binaries;
tests/support/postgres.py), the collector's monitoring role applied and its postgresql profile on
throughout, and the order service sends its trace context to the server (ORDER_SQL_COMMENTER=1):
tests/e2e/test_databases.py and the slow-database game day check the database's own view. A
collector without the receiver (the local build here: docs/databases.md) runs orders on SQLite
as before, and those checks skip, saying why.

Everything started here is stopped again, also on failure or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sagascope.cli.client import OrderClient, login, order_request
from sagascope.cli.demo import run_scenarios
from sagascope.local import postgres_monitoring
from sagascope.local.backends import BackendsNotInstalled, BackendStack, Installed
from sagascope.local.services import LocalStack, Ports
from sagascope.local.supervisor import Supervisor
from sagascope.local.topology import COLLECTOR, JAEGER, PROMETHEUS, service_telemetry_environment
from tests.support import postgres

REPO = Path(__file__).resolve().parents[1]
LOAD_ORDERS = int(os.environ.get("E2E_LOAD_ORDERS", "120"))
LOAD_CONCURRENCY = 8
PRODUCTION_ORDERS = int(os.environ.get("E2E_PRODUCTION_ORDERS_COUNT", "240"))
COMPENSATED_SHARE = 0.2  # of the production load: confirm_failure injected, so charged then refunded
# The production profile's settings for this run: decide 5 s after a trace's first span (the
# services flush every 0.5 s here); "slow" well above what a loaded 2-core machine takes.
TAIL_SAMPLING_ENV = {
    "TAIL_SAMPLING_DECISION_WAIT": "5s",
    "TAIL_SAMPLING_PERCENTAGE": "10",
    "TAIL_SAMPLING_SLOW_MS": "5000",
}
E2E_DIR = REPO / "var" / "e2e"
# The order database: pg_stat_statements for the collector's top queries, lock waits logged.
ORDER_DB_SETTINGS = {"shared_preload_libraries": "pg_stat_statements", "log_lock_waits": "on"}
ORDER_DB_NAME = "orders"
# Top queries every 10 s instead of every minute, so a short run sees several reports.
POSTGRESQL_COLLECTOR_ENV = {"POSTGRESQL_TOP_QUERY_INTERVAL": "10s"}


def say(message: str) -> None:
    print(f"[e2e] {message}", flush=True)


async def short_load(stack: LocalStack) -> dict[str, int]:
    """A bounded burst on loopback: mostly happy orders, some declines and refunds."""
    token = await login(stack.identity_target, "alice", "alice-dev-password")
    client = OrderClient(stack.order_target, token)
    counts: dict[str, int] = {}
    queue = list(range(LOAD_ORDERS))
    rng = random.Random(7)

    async def worker() -> None:
        while queue:
            i = queue.pop()
            roll = rng.random()
            inject: tuple[str, ...] = ("confirm_failure",) if roll < 0.15 else ()
            amount = 150_000 if 0.15 <= roll < 0.2 else 2_000 + i
            result = await client.create_order(order_request("alice", f"e2e-load-{time.time_ns()}-{i}",
                                                             amount_minor=amount), inject=inject)
            counts[result.status_name] = counts.get(result.status_name, 0) + 1

    try:
        await asyncio.gather(*(worker() for _ in range(LOAD_CONCURRENCY)))
    finally:
        await client.close()
    return counts


async def production_load(stack: LocalStack) -> list[dict[str, str]]:
    """PRODUCTION_ORDERS orders, COMPENSATED_SHARE of them asking for confirm_failure; each
    order's id, correlation id and final status."""
    token = await login(stack.identity_target, "alice", "alice-dev-password")
    client = OrderClient(stack.order_target, token)
    placed: list[dict[str, str]] = []
    queue = list(range(PRODUCTION_ORDERS))
    rng = random.Random(12)
    faults = {i for i in queue if rng.random() < COMPENSATED_SHARE}

    async def worker() -> None:
        while queue:
            i = queue.pop()
            inject: tuple[str, ...] = ("confirm_failure",) if i in faults else ()
            result = await client.create_order(
                order_request("alice", f"e2e-prod-{time.time_ns()}-{i}", amount_minor=1_000 + i), inject=inject
            )
            placed.append(
                {
                    "order_id": result.order.id if result.order else "",
                    "correlation_id": result.correlation_id,
                    "status": result.status_name,
                }
            )

    try:
        await asyncio.gather(*(worker() for _ in range(LOAD_CONCURRENCY)))
    finally:
        await client.close()
    return placed


def _get_json(url: str, form: dict[str, str] | None = None) -> Any:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=15) as reply:
        return json.load(reply)


async def poll(what: str, probe: Callable[[], tuple[bool, str]], deadline_s: float, every_s: float = 1.0) -> bool:
    """Call ``probe`` (blocking, in a thread) until it says done or ``deadline_s`` passes; says how
    long it took, or what it last saw. A condition with a deadline instead of a fixed sleep."""
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < deadline_s:
        try:
            done, last = await asyncio.to_thread(probe)
        except OSError as exc:  # a backend still starting, or busy
            done, last = False, f"{type(exc).__name__}: {exc}"
        if done:
            say(f"{what}: after {time.monotonic() - started:.1f}s ({last})")
            return True
        await asyncio.sleep(every_s)
    say(f"{what}: not within {deadline_s:.0f}s (last: {last}); the tests will say what is missing")
    return False


def sagas_in_prometheus(at_least: int) -> Callable[[], tuple[bool, str]]:
    """Prometheus holds the finished sagas' counter, through the collector, up to ``at_least``."""
    def probe() -> tuple[bool, str]:
        body = _get_json(f"{PROMETHEUS.web.url}/api/v1/query", {"query": "sum(saga_finished_total)"})
        result = body["data"]["result"]
        value = float(result[0]["value"][1]) if result else 0.0
        return value >= at_least, f"sum(saga_finished_total) = {value:g}, want >= {at_least}"
    return probe


def saga_traces_settled(since_s: float, at_least: int) -> Callable[[], tuple[bool, str]]:
    """The tail sampler has decided: Jaeger's count of saga traces since ``since_s`` (epoch) is at
    least ``at_least`` (every compensated one is kept) and no longer grows between two reads."""
    last: list[int] = []

    def probe() -> tuple[bool, str]:
        query = urllib.parse.urlencode({"service": "order-service", "operation": "saga CreateOrder",
                                        "start": int(since_s * 1e6), "limit": 5000})
        count = len(_get_json(f"{JAEGER.query_http.url}/api/traces?{query}").get("data") or [])
        settled = bool(last) and last[-1] == count and count >= at_least
        last.append(count)
        return settled, f"{count} saga traces kept, want >= {at_least} and unchanged between reads"
    return probe


def pytest_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", *args]


async def run(order_database_url: str | None) -> int:
    """``order_database_url``: PostgreSQL with the database view, or None (SQLite, no view)."""
    telemetry_env = service_telemetry_environment()
    env = {
        **telemetry_env,
        "OTEL_BSP_SCHEDULE_DELAY": "500",
        "OTEL_BLRP_SCHEDULE_DELAY": "500",
        "SAGASCOPE_FAULTS_ENABLED": "true",
        "SAGASCOPE_ENV": "development",
    }
    database_profiles: list[str] = []
    postgresql_env: dict[str, str] = {}
    database_test_env = {"E2E_DATABASE_VIEW_ABSENT": postgres_monitoring.NOT_BUILT_REASON}
    if order_database_url is not None:
        env["ORDER_SQL_COMMENTER"] = "1"
        role = postgres_monitoring.MonitoringRole()
        postgres_monitoring.apply_monitoring_role(order_database_url, role)
        database_profiles = [postgres_monitoring.PROFILE]
        postgresql_env = {
            **postgres_monitoring.collector_environment(order_database_url, role),
            **POSTGRESQL_COLLECTOR_ENV,
        }
        database_test_env = {
            "E2E_ORDER_DATABASE_URL": order_database_url,
            "E2E_ORDER_DATABASE": ORDER_DB_NAME,
            "E2E_ORDER_DB_SYSTEM": "postgresql",
        }
    supervisor = Supervisor(REPO, say=lambda m: say(m))
    ports = Ports()  # the documented defaults: what Prometheus's rendered config scrapes
    try:
        backends = BackendStack(
            REPO / "var" / "stack",
            ports,
            repo=REPO,
            supervisor=supervisor,
            # Both log paths at once (OTLP as always, plus the file_log receiver on the services'
            # JSON lines into a second data stream) so the tests can compare the documents.
            collector_profiles=["filelog", *database_profiles],
            collector_overlays=[REPO / "tests" / "e2e" / "collector-filelog-compare.yml"],
            service_logs=E2E_DIR / "logs",
            collector_env=postgresql_env,
        )
    except BackendsNotInstalled as exc:
        say(str(exc))
        return 1
    stack = LocalStack(E2E_DIR, ports, extra_env=env, cwd=REPO, supervisor=supervisor,
                       database_url=order_database_url)
    try:
        say("starting the backends (make backends builds them once, then reuses the cache)")
        await backends.start()
        say(f"starting the services (OTLP -> collector at {COLLECTOR.otlp_grpc.address})")
        await stack.start()
        # The load first: the demo's last scenario leaves the payment breaker open for a while.
        started = time.monotonic()
        counts = await short_load(stack)
        say(f"short load: {LOAD_ORDERS} orders in {time.monotonic() - started:.1f}s -> {counts}")
        if counts.get("COMPLETED", 0) == 0:
            say("the short load completed no order")
            return 1
        outcomes = await run_scenarios(stack.order_target, stack.identity_target, lambda m: say(m.strip()))
        bad = [o.scenario for o in outcomes if not o.ok]
        if bad:
            say(f"demo scenarios misbehaved: {bad}")
            return 1
        compensated = next(o for o in outcomes if o.scenario.startswith("confirm fails"))
        say(f"compensated order {compensated.order_id}, correlation id {compensated.correlation_id}")
        await poll("the load's sagas in Prometheus (scraped by the collector, remote-written)",
                   sagas_in_prometheus(counts.get("COMPLETED", 0) + counts.get("CANCELLED", 0)), deadline_s=90)
        test_env = {
            **os.environ,
            **telemetry_env,
            "SAGASCOPE_E2E_REQUIRED": "1",
            "E2E_CORRELATION_ID": compensated.correlation_id,
            "E2E_ORDER_ID": compensated.order_id,
            **database_test_env,
        }
        production_tests = "tests/e2e/test_production_profile.py"
        gamedays = "tests/e2e/test_gamedays.py"  # runs its own services (it kills them): last
        pytest = pytest_command("tests/e2e", f"--ignore={production_tests}", f"--ignore={gamedays}")
        code = await asyncio.to_thread(subprocess.call, pytest, cwd=REPO, env=test_env)
        if code != 0:
            return code

        say("production profile: the collector again, with tail sampling (profiles/production.yml)")
        await backends.restart_collector(["production", *database_profiles], env=TAIL_SAMPLING_ENV)
        started, load_began = time.monotonic(), time.time()
        orders = await production_load(stack)
        statuses = {s: sum(o["status"] == s for o in orders) for s in {o["status"] for o in orders}}
        say(f"production load: {len(orders)} orders in {time.monotonic() - started:.1f}s -> {statuses}")
        orders_file = E2E_DIR / "production-orders.json"
        orders_file.write_text(json.dumps(orders, indent=1))
        # Decisions come TAIL_SAMPLING_DECISION_WAIT (5 s) after a trace's first span: poll until
        # the kept traces stop growing, at least every compensated one among them.
        await poll("the tail sampler's decisions in Jaeger",
                   saga_traces_settled(load_began, statuses.get("CANCELLED", 0)), deadline_s=90, every_s=3.0)
        production_env = {**test_env, **TAIL_SAMPLING_ENV, "E2E_PRODUCTION_ORDERS": str(orders_file)}
        # -rP: the sampled shares the tests print
        production_pytest = pytest_command("-rP", production_tests)
        code = await asyncio.to_thread(subprocess.call, production_pytest, cwd=REPO, env=production_env)
        if code != 0:
            return code

        say("game days: the collector back on the base config (every trace kept); our services stop")
        await backends.restart_collector(database_profiles)
        await stack.stop()
        return await asyncio.to_thread(subprocess.call, pytest_command(gamedays), cwd=REPO, env=test_env)
    except (RuntimeError, TimeoutError) as exc:  # a process that would not start, or died
        say(f"failed: {exc}")
        return 1
    finally:
        say("stopping the services, then the backends")
        await supervisor.stop()


def main() -> int:
    try:
        receivers = Installed.read(REPO).collector_components("receivers")
        if "postgresql" not in receivers:
            say(f"the database view is not checked: {postgres_monitoring.NOT_BUILT_REASON}; orders on SQLite")
            return asyncio.run(run(None))
        reason = postgres.unavailable_reason()
        if reason:
            say(f"cannot run: the database view needs PostgreSQL, and {reason}")
            return 1
        with postgres.throwaway_cluster(ORDER_DB_SETTINGS) as cluster:
            return asyncio.run(run(postgres.fresh_database(cluster, ORDER_DB_NAME)))
    except KeyboardInterrupt:  # asyncio.run has cancelled run(), whose finally stopped everything
        return 130


if __name__ == "__main__":
    sys.exit(main())
