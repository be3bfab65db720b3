"""``make e2e``: the real backends, the services pointed at them, the demo, a short load, then
tests/e2e asserts against Jaeger's, Elasticsearch's and Prometheus's own APIs.

One supervisor (sagascope.local) runs it all: the backends from the same config files as
docker compose, the services exporting OTLP to the collector and scraped by Prometheus on their
default metrics ports. Everything started here is stopped again, also on failure or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from sagascope.cli.client import OrderClient, login, order_request
from sagascope.cli.demo import run_scenarios
from sagascope.local.backends import BackendsNotInstalled, BackendStack
from sagascope.local.services import LocalStack, Ports
from sagascope.local.supervisor import Supervisor
from sagascope.local.topology import COLLECTOR, service_telemetry_environment

REPO = Path(__file__).resolve().parents[1]
LOAD_ORDERS = int(os.environ.get("E2E_LOAD_ORDERS", "120"))
LOAD_CONCURRENCY = 8


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


async def run() -> int:
    telemetry_env = service_telemetry_environment()
    env = {
        **telemetry_env,
        "OTEL_BSP_SCHEDULE_DELAY": "500",
        "OTEL_BLRP_SCHEDULE_DELAY": "500",
        "SAGASCOPE_FAULTS_ENABLED": "true",
        "SAGASCOPE_ENV": "development",
    }
    supervisor = Supervisor(REPO, say=lambda m: say(m))
    ports = Ports()  # the documented defaults: what Prometheus's rendered config scrapes
    try:
        backends = BackendStack(REPO / "var" / "stack", ports, repo=REPO, supervisor=supervisor)
    except BackendsNotInstalled as exc:
        say(str(exc))
        return 1
    stack = LocalStack(REPO / "var" / "e2e", ports, extra_env=env, cwd=REPO, supervisor=supervisor)
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
        say("waiting for a Prometheus scrape and the batch exporters (12 s)")
        await asyncio.sleep(12)
        test_env = {
            **os.environ,
            **telemetry_env,
            "SAGASCOPE_E2E_REQUIRED": "1",
            "E2E_CORRELATION_ID": compensated.correlation_id,
            "E2E_ORDER_ID": compensated.order_id,
        }
        pytest = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/e2e"]
        gamedays = "tests/e2e/test_gamedays.py"  # runs its own services (it kills them): after ours stop
        code = await asyncio.to_thread(subprocess.call, [*pytest, f"--ignore={gamedays}"], cwd=REPO, env=test_env)
        say("stopping the services; the game days start their own against the same backends")
        await stack.stop()
        return max(code, await asyncio.to_thread(subprocess.call, [*pytest[:-1], gamedays], cwd=REPO, env=test_env))
    except (RuntimeError, TimeoutError) as exc:  # a process that would not start, or died
        say(f"failed: {exc}")
        return 1
    finally:
        say("stopping the services, then the backends")
        await supervisor.stop()


def main() -> int:
    try:
        return asyncio.run(run())
    except KeyboardInterrupt:  # asyncio.run has cancelled run(), whose finally stopped everything
        return 130


if __name__ == "__main__":
    sys.exit(main())
