"""Disruption on the running cluster, with orders flowing through the `order` Service:

- `kubectl rollout restart deployment/order` under a steady bounded stream: zero failed
  CreateOrder (readiness, the preStop sleep and the gRPC drain at work), counted and reported;
- `kubectl delete pod <order pod> --grace-period=0 --force` with sagas in flight: every saga ends
  terminal (the other replica takes over the dead one's leases) and the chaos auditor
  (tools/chaos/auditor.py) finds no money violation in PostgreSQL and the payments store.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.deploy.runtime.conftest import pod_names, ready_pods
from tests.deploy.runtime.kube import NAMESPACE, Kube, wait_for
from tests.deploy.runtime.orders import StreamResult, stream
from tools.chaos import auditor

TERMINAL = {"COMPLETED", "COMPENSATED"}
PAYMENT_LIMIT_MINOR = 100_000  # PAYMENT_LIMIT_MAJOR=1000 (the default) in EUR cents


def _during(kube: Kube, action: Any, settle: float = 5.0, workers: int = 3, per_second: float = 3.0) -> StreamResult:
    """Run the stream, do ``action()`` (blocking, in a thread) once it flows, stop ``settle``
    seconds after the action returned."""

    async def main() -> StreamResult:
        stop = asyncio.Event()
        task = asyncio.create_task(stream(kube, stop, workers=workers, per_second=per_second))
        await asyncio.sleep(5)
        await asyncio.to_thread(action)
        await asyncio.sleep(settle)
        stop.set()
        return await task

    return asyncio.run(main())


def test_rollout_restart_under_a_stream_of_orders_loses_none(kube: Kube, deployed: list[dict[str, Any]]) -> None:
    before = ready_pods(kube, "order", 2)
    started = time.monotonic()

    def restart() -> None:
        kube.kubectl("-n", NAMESPACE, "rollout", "restart", "deployment/order")
        kube.kubectl("-n", NAMESPACE, "rollout", "status", "deployment/order", "--timeout=300s", timeout=330)

    result = _during(kube, restart, settle=10)
    after = ready_pods(kube, "order", 2)
    print(f"\n[k8s] rollout restart of order ({time.monotonic() - started:.0f}s, pods {before} -> {after}): "
          f"{result.summary()}")
    assert not set(before) & set(after), f"the pods were not replaced: {before} -> {after}"
    assert len(result.replies) >= 30, result.summary()
    first = [(r.code.name, r.message) for r in result.failed[:5]]
    assert not result.failed, f"{result.summary()}; first failures: {first}"


def _database_urls(kube: Kube) -> tuple[str, str]:
    postgres = kube.service_address("postgres", 5432)
    mongo = kube.service_address("mongo", 27017)
    return f"postgresql://sagascope:dev-only-postgres-password@{postgres}/orders", f"mongodb://{mongo}/?directConnection=true"


def test_force_deleting_an_order_pod_with_sagas_in_flight_loses_no_money(
    kube: Kube, deployed: list[dict[str, Any]]
) -> None:
    victim = ready_pods(kube, "order", 2)[0]
    killed_at: list[float] = []

    def kill() -> None:
        killed_at.append(time.monotonic())
        kube.kubectl("-n", NAMESPACE, "delete", "pod", victim, "--grace-period=0", "--force")

    # Four clients back to back (no pacing): four orders are always in flight, about half of
    # them on the victim, when it goes.
    result = _during(kube, kill, settle=8, workers=4, per_second=1000.0)
    database_url, mongo_url = _database_urls(kube)
    keys = set(result.keys)

    def settled() -> auditor.Facts | None:
        facts = asyncio.run(auditor.read_facts(database_url, mongo_url))
        ours = {o.saga_id for o in facts.orders if o.idempotency_key in keys}
        open_sagas = [s for s in facts.sagas if s.id in ours and s.status not in TERMINAL]
        return facts if not open_sagas else None

    facts = wait_for("every saga of the stream to end COMPLETED or COMPENSATED (leases taken over)", settled,
                     timeout=180, every=5)
    violations = auditor.check_state(facts, PAYMENT_LIMIT_MINOR)
    summary = {k: dict(v) for k, v in auditor.summarize(facts).items()}
    in_flight = result.in_flight_at(killed_at[0])
    print(f"\n[k8s] force-deleted {victim} with {in_flight} CreateOrder in flight (on both replicas): "
          f"{result.summary()}; stored: {summary}; "
          f"violations: {len(violations)}")
    assert not violations, violations[:10]
    assert victim not in pod_names(kube, "order")
