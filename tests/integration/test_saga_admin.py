"""SagaAdminService over real gRPC on PostgreSQL and SQLite: every action's allowed and refused
transitions, the audit trail, recovery skipping PAUSED sagas (across a restart), a retry racing
recovery on two replicas, a manual resolution the chaos auditor reports as such, and who may call
what."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from sagascope.api.admin.v1 import admin_pb2, admin_pb2_grpc
from sagascope.api.orders.v1 import orders_pb2
from sagascope.common.telemetry import init_telemetry
from sagascope.common.telemetry.settings import TelemetrySettings
from sagascope.order.server import OrderApp
from sagascope.saga.executor import SagaExecutor
from tests.support.order_stack import OrderStack, request, running_order_stack
from tools.chaos.auditor import audit, manual_resolutions, read_facts

pytestmark = pytest.mark.timeout(180)

S = admin_pb2
FAILED, PAUSED, COMPENSATED, COMPLETED, RUNNING = (
    S.SAGA_STATUS_FAILED, S.SAGA_STATUS_PAUSED, S.SAGA_STATUS_COMPENSATED, S.SAGA_STATUS_COMPLETED,
    S.SAGA_STATUS_RUNNING,
)


def admin(stack: OrderStack) -> admin_pb2_grpc.SagaAdminServiceStub:
    return admin_pb2_grpc.SagaAdminServiceStub(stack.channel)


async def refusal(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call was not refused")


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def get(stack: OrderStack, saga_id: str) -> admin_pb2.Saga:
    reply = await admin(stack).GetSaga(S.GetSagaRequest(saga_id=saga_id), metadata=stack.md("operator"))
    return reply.saga


async def failed_saga(stack: OrderStack, key: str) -> tuple[str, str]:
    """(saga id, order id) of a saga parked FAILED with a real charge: confirm fails and so does the
    refund (both faults asked for by this request only). The caller stops recovery first, so
    nothing moves the saga on its own; recovery's refund (without the fault) succeeds."""
    faults = stack.md("alice", "confirm_failure", "refund_failure")
    await asyncio.gather(stack.stub.CreateOrder(request(key), metadata=faults), return_exceptions=True)
    page = await admin(stack).ListSagas(
        S.ListSagasRequest(filter=S.SagaFilter(status=FAILED)), metadata=stack.md("operator")
    )
    found = {s.order_id: s.saga_id for s in page.sagas}
    order = next(o for o in (await stack.stub.ListOrders(orders_pb2.ListOrdersRequest(), metadata=stack.md())).orders
                 if o.idempotency_key == key)
    return found[order.id], order.id


async def test_every_action_allowed_and_refused_with_the_audit_trail(tmp_path, database_url, caplog):
    # A lease longer than the 3 s confirm latency below, so the slow saga keeps its driver throughout.
    async with running_order_stack(tmp_path, database_url, lease_seconds=10.0) as stack:
        await _every_action(stack, caplog)


async def _every_action(stack: OrderStack, caplog: pytest.LogCaptureFixture) -> None:
    op = stack.md("operator")
    stub = admin(stack)
    caplog.set_level(logging.INFO, logger="sagascope.saga.admin")
    logging.getLogger().addHandler(caplog.handler)  # the service's logging set-up replaced the root handlers

    completed = (await stack.stub.CreateOrder(request("adm-ok"), metadata=stack.md())).order
    # A saga in flight (confirm sleeps 3 s): its orchestrator holds the lease, so nobody else may touch it.
    in_flight = asyncio.ensure_future(
        stack.stub.CreateOrder(request("adm-slow"), metadata=stack.md("alice", "confirm_latency"))
    )
    async def running_saga() -> str | None:
        page = await stub.ListSagas(S.ListSagasRequest(filter=S.SagaFilter(status=RUNNING)), metadata=op)
        return page.sagas[0].saga_id if page.sagas else None

    running_id = await eventually(running_saga, "the slow saga to be RUNNING")
    for call in (stub.PauseSaga(S.PauseSagaRequest(saga_id=running_id), metadata=op),
                 stub.RetrySaga(S.RetrySagaRequest(saga_id=running_id), metadata=op)):
        error = await refusal(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"saga {running_id} is RUNNING, driven by test-order" in error.details()
    assert (await in_flight).order.status == orders_pb2.ORDER_STATUS_COMPLETED

    await stack.order.recovery.stop()  # nothing moves the parked sagas but the operator
    saga_id, order_id = await failed_saga(stack, "adm-failed")
    paused_id, _ = await failed_saga(stack, "adm-failed-2")
    resolve_id, resolve_order = await failed_saga(stack, "adm-failed-3")

    # GetSaga by each key: the same saga, with its timeline.
    by_order = (await stub.GetSaga(S.GetSagaRequest(order_id=order_id), metadata=op)).saga
    by_cid = (
        await stub.GetSaga(S.GetSagaRequest(correlation_id=by_order.summary.correlation_id), metadata=op)
    ).saga
    assert by_order.summary.saga_id == by_cid.summary.saga_id == saga_id
    assert by_order.summary.status == FAILED and by_order.summary.step == "charge"
    assert by_order.summary.failure_kind == "unavailable" and by_order.summary.HasField("next_attempt_at")
    assert "compensation pending" in by_order.summary.failure_reason
    timeline = [(s.step, s.kind, s.result) for s in by_order.steps]
    assert timeline == [
        ("reserve", S.STEP_KIND_ACTION, "completed"),
        ("charge", S.STEP_KIND_ACTION, "completed"),
        ("confirm", S.STEP_KIND_ACTION, "failed"),
        ("charge", S.STEP_KIND_COMPENSATION, "failed"),
    ]
    assert all(s.HasField("started_at") and s.HasField("ended_at") for s in by_order.steps)
    assert by_order.steps[2].reason == "confirm failed: injected fault confirm_failure"
    assert len(by_order.trace_id) in (0, 32)

    # COMPLETED: every change refused, naming the status.
    completed_saga = (await stub.GetSaga(S.GetSagaRequest(order_id=completed.id), metadata=op)).saga
    done_id = completed_saga.summary.saga_id
    assert [s.step for s in completed_saga.steps] == ["reserve", "charge", "confirm"]
    for call in (
        stub.RetrySaga(S.RetrySagaRequest(saga_id=done_id), metadata=op),
        stub.PauseSaga(S.PauseSagaRequest(saga_id=done_id), metadata=op),
        stub.ResumeSaga(S.ResumeSagaRequest(saga_id=done_id), metadata=op),
        stub.ResolveSaga(S.ResolveSagaRequest(saga_id=done_id, note="n"), metadata=op),
    ):
        error = await refusal(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and f"saga {done_id} is COMPLETED" in error.details()

    # FAILED: resume refused; retry makes it due, recovery refunds it under its lease.
    error = await refusal(stub.ResumeSaga(S.ResumeSagaRequest(saga_id=saga_id), metadata=op))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "is FAILED; resume needs PAUSED" in error.details()
    retried = (await stub.RetrySaga(S.RetrySagaRequest(saga_id=saga_id, note="payment is back"), metadata=op)).saga
    assert retried.audit[-1].action == "retry" and retried.audit[-1].actor == "operator"
    done = await eventually(lambda: _status_is(stack, saga_id, COMPENSATED), "recovery to refund the retried saga")
    assert done.steps[-2].kind == S.STEP_KIND_COMPENSATION and done.steps[-2].result == "completed"
    assert done.steps[-2].attempt == 2  # the charge's compensation: failed once, then done
    assert [p["status"] for p in await stack.payments_for(order_id)] == ["REFUNDED"]

    # PAUSED: recovery skips it even when due; pause/retry refused; resume gives FAILED back, due now.
    paused = (await stub.PauseSaga(S.PauseSagaRequest(saga_id=paused_id, note="poisoned"), metadata=op)).saga
    assert paused.summary.status == PAUSED and paused.summary.paused_from == FAILED
    assert paused.summary.lease_owner == ""
    await stub.PauseSaga(S.PauseSagaRequest(saga_id=resolve_id), metadata=op)  # resolved below
    await asyncio.sleep(1.2)  # past their retry time
    assert await stack.order.recovery.run_once() == 0
    assert (await get(stack, paused_id)).summary.status == PAUSED
    for call, action in (
        (stub.PauseSaga(S.PauseSagaRequest(saga_id=paused_id), metadata=op), "pause"),
        (stub.RetrySaga(S.RetrySagaRequest(saga_id=paused_id), metadata=op), "retry"),
    ):
        error = await refusal(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"saga {paused_id} is PAUSED; {action} needs" in error.details()
    resumed = (await stub.ResumeSaga(S.ResumeSagaRequest(saga_id=paused_id), metadata=op)).saga
    # Due now: the woken recovery may have taken it (COMPENSATING) or finished it already.
    assert resumed.summary.status in (FAILED, S.SAGA_STATUS_COMPENSATING, COMPENSATED)
    finished = await eventually(
        lambda: _status_is(stack, paused_id, COMPENSATED), "the resumed saga to be compensated by recovery"
    )
    assert finished.summary.resolution == ""
    assert [(a.action, a.from_status, a.to_status) for a in finished.audit] == [
        ("pause", FAILED, PAUSED), ("resume", PAUSED, FAILED)
    ]

    # ResolveSaga: the note is required; from PAUSED it ends COMPENSATED by hand, the order CANCELLED.
    error = await refusal(stub.ResolveSaga(S.ResolveSagaRequest(saga_id=resolve_id, note="  "), metadata=op))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("note: is required")
    resolved = (
        await stub.ResolveSaga(S.ResolveSagaRequest(saga_id=resolve_id, note="refunded by finance, FIN-1"), metadata=op)
    ).saga
    assert resolved.summary.status == COMPENSATED and resolved.summary.resolution == "manual"
    assert (resolved.audit[-1].action, resolved.audit[-1].actor, resolved.audit[-1].note) == (
        "resolve", "operator", "refunded by finance, FIN-1"
    )
    assert (resolved.audit[-1].from_status, resolved.audit[-1].to_status) == (PAUSED, COMPENSATED)
    order = (await stack.stub.GetOrder(orders_pb2.GetOrderRequest(order_id=resolve_order), metadata=stack.md())).order
    assert order.status == orders_pb2.ORDER_STATUS_CANCELLED
    assert order.failure_reason == "resolved manually by operator: refunded by finance, FIN-1"
    error = await refusal(stub.ResolveSaga(S.ResolveSagaRequest(saga_id=resolve_id, note="again"), metadata=op))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "is COMPENSATED; resolve needs" in error.details()

    # Bad and unknown ids.
    for bad in ("", "has space", "x" * 200):
        error = await refusal(stub.PauseSaga(S.PauseSagaRequest(saga_id=bad), metadata=op))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("saga_id: ")
    error = await refusal(stub.GetSaga(S.GetSagaRequest(), metadata=op))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("ref: ")
    error = await refusal(stub.RetrySaga(S.RetrySagaRequest(saga_id="saga_nope"), metadata=op))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    # Telemetry: one log event and one count per applied change, none for the refusals.
    events = [(r.event, r.operator) for r in caplog.records if getattr(r, "event", "").startswith("saga.admin.")]
    assert events == [("saga.admin.retry", "operator"), ("saga.admin.pause", "operator"),
                      ("saga.admin.pause", "operator"), ("saga.admin.resume", "operator"),
                      ("saga.admin.resolve", "operator")]
    registry = stack.order.telemetry.metrics.registry
    counts = {a: registry.get_sample_value("saga_admin_actions_total", {"action": a})
              for a in ("retry", "pause", "resume", "resolve")}
    assert counts == {"retry": 1.0, "pause": 2.0, "resume": 1.0, "resolve": 1.0}


async def _attempts_above(stack: OrderStack, saga_id: str, attempts: int) -> admin_pb2.Saga | None:
    saga = await get(stack, saga_id)
    return saga if saga.summary.attempts > attempts else None


async def _status_is(stack: OrderStack, saga_id: str, status: int) -> admin_pb2.Saga | None:
    saga = await get(stack, saga_id)
    return saga if saga.summary.status == status else None


async def test_list_filters_pages_and_batch_resume_at_a_rate(order_stack):
    stack: OrderStack = order_stack
    op = stack.md("operator")
    stub = admin(stack)
    await stack.order.recovery.stop()
    ids = [(await failed_saga(stack, f"adm-list-{i}"))[0] for i in range(4)]
    seen, token = [], ""
    while True:
        page = await stub.ListSagas(
            S.ListSagasRequest(filter=S.SagaFilter(status=FAILED, step="charge", saga_name="CreateOrder"),
                               order=S.SAGA_ORDER_STALEST, page_size=3, page_token=token),
            metadata=op,
        )
        seen += [s.saga_id for s in page.sagas]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 4
    newest = await stub.ListSagas(S.ListSagasRequest(page_size=4), metadata=op)
    assert [s.saga_id for s in newest.sagas] == ids[::-1]
    young = await stub.ListSagas(
        S.ListSagasRequest(filter=S.SagaFilter(older_than=Duration(seconds=3600))), metadata=op
    )
    assert list(young.sagas) == []
    for bad, field in (
        (S.ListSagasRequest(page_size=201), "page_size"),
        (S.ListSagasRequest(page_token="%%%"), "page_token"),
        (S.ListSagasRequest(filter=S.SagaFilter(step="nope")), "filter.step"),
        (S.ListSagasRequest(filter=S.SagaFilter(status=99)), "filter.status"),
    ):
        error = await refusal(stub.ListSagas(bad, metadata=op))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith(field)

    for saga_id in ids:
        await stub.PauseSaga(S.PauseSagaRequest(saga_id=saga_id), metadata=op)
    error = await refusal(stub.ResumeSagas(S.ResumeSagasRequest(rate_per_second=0), metadata=op))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("rate_per_second")
    started = time.monotonic()
    reply = await stub.ResumeSagas(S.ResumeSagasRequest(rate_per_second=4, limit=3, note="batch"), metadata=op)
    first = reply.result
    assert first.applied == 3 and first.refused == 0 and first.next_page_token
    rest = (
        await stub.ResumeSagas(
            S.ResumeSagasRequest(rate_per_second=4, limit=3, page_token=first.next_page_token), metadata=op
        )
    ).result
    elapsed = time.monotonic() - started
    assert rest.applied == 1 and not rest.next_page_token
    stamps = [i.at.ToNanoseconds() / 1e9 for i in first.items]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(g >= 0.24 for g in gaps), gaps  # 4 a second: a quarter second apart at least
    assert elapsed >= 0.5
    statuses = [(await get(stack, i)).summary.status for i in ids]
    assert PAUSED not in statuses


async def test_a_paused_saga_stays_paused_across_a_restart(tmp_path, database_url):
    async with running_order_stack(tmp_path, database_url) as stack:
        op = stack.md("operator")
        await stack.order.recovery.stop()
        saga_id, _ = await failed_saga(stack, "adm-restart")
        await admin(stack).PauseSaga(S.PauseSagaRequest(saga_id=saga_id, note="quarantine"), metadata=op)
        # A new orchestrator on the same database: its start-up recovery must leave the saga alone.
        await stack.order.stop()
        stack.order = OrderApp(
            replace(stack.order.settings, instance_id="test-order-restarted"),
            init_telemetry("order-service", settings=TelemetrySettings(enabled=False)),
        )
        port = await stack.order.start()
        await stack.channel.close()
        stack.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        await asyncio.sleep(2.0)  # several recovery passes (0.3 s apart)
        saga = await get(stack, saga_id)
        assert saga.summary.status == PAUSED and saga.audit[-1].action == "pause"
        await admin(stack).ResumeSaga(S.ResumeSagaRequest(saga_id=saga_id), metadata=op)
        await eventually(lambda: _status_is(stack, saga_id, COMPENSATED), "recovery to finish the resumed saga")


async def test_retry_racing_recovery_on_two_replicas_drives_the_saga_once(tmp_path, database_url):
    from sqlalchemy import update

    from sagascope.saga.store import saga_instances

    async with running_order_stack(tmp_path, database_url) as stack:
        await stack.order.recovery.stop()
        saga_id, order_id = await failed_saga(stack, "adm-race")
        # Parked with a long backoff (as after many attempts): only the operator's retry makes it due.
        async with stack.order.engine.begin() as connection:
            await connection.execute(
                update(saga_instances).where(saga_instances.c.id == saga_id).values(next_attempt_at=time.time() + 3600)
            )
        second = OrderApp(
            replace(stack.order.settings, instance_id="test-order-b", grpc_port=0),
            init_telemetry("order-service", settings=TelemetrySettings(enabled=False)),
        )
        await second.start()
        await second.recovery.stop()
        drives: list[str] = []
        for app, name in ((stack.order, "a"), (second, "b")):
            _count_resumes(app.executor, name, drives)
        stop = asyncio.Event()

        async def replica_b_polls() -> int:
            passes = 0
            while not stop.is_set():
                await second.recovery.run_once()
                passes += 1
                await asyncio.sleep(0.01)
            return passes

        polling = asyncio.create_task(replica_b_polls())
        try:
            await asyncio.sleep(0.3)
            # Replica a: RetrySaga makes it due and wakes a's recovery; b is polling all the while.
            retried = await admin(stack).RetrySaga(S.RetrySagaRequest(saga_id=saga_id), metadata=stack.md("operator"))
            assert retried.saga.audit[-1].action == "retry"
            await eventually(lambda: _status_is(stack, saga_id, COMPENSATED), "the saga to be compensated")
            await asyncio.sleep(0.5)
        finally:
            stop.set()
            passes = await polling
            await second.stop()
        assert passes > 10
        assert len(drives) == 1, drives
        assert [p["status"] for p in await stack.payments_for(order_id)] == ["REFUNDED"]
        saga = await get(stack, saga_id)
        compensations = [(s.step, s.result) for s in saga.steps if s.kind == S.STEP_KIND_COMPENSATION]
        assert compensations == [("charge", "failed"), ("charge", "completed"), ("reserve", "completed")]


def _count_resumes(executor: SagaExecutor[Any], name: str, drives: list[str]) -> None:
    resume = executor.resume

    async def counted(record):  # type: ignore[no-untyped-def]
        drives.append(f"{name}:{record.id}")
        return await resume(record)

    executor.resume = counted  # type: ignore[method-assign]


async def test_a_manual_resolution_is_audited_and_the_auditor_reports_it_as_such(order_stack, database_url):
    from sqlalchemy import delete
    from sqlalchemy.ext.asyncio import create_async_engine

    from sagascope.order.database import async_url
    from sagascope.saga.store import saga_audit

    stack: OrderStack = order_stack
    await stack.order.recovery.stop()  # the refund keeps failing: the charge stays until a person acts
    faults = stack.md("alice", "confirm_failure", "refund_failure")
    await asyncio.gather(stack.stub.CreateOrder(request("adm-charged"), metadata=faults), return_exceptions=True)
    page = await admin(stack).ListSagas(
        S.ListSagasRequest(filter=S.SagaFilter(status=FAILED)), metadata=stack.md("operator")
    )
    (parked,) = page.sagas
    assert [p["status"] for p in await stack.payments_for(parked.order_id)] == ["CHARGED"]
    await admin(stack).ResolveSaga(
        S.ResolveSagaRequest(saga_id=parked.saga_id, note="refunded by hand, FIN-7"), metadata=stack.md("operator")
    )
    facts = await read_facts(database_url, stack.mongo_url)
    assert audit(facts, [], 100_000) == []
    (manual,) = manual_resolutions(facts)
    assert (manual.saga_id, manual.order_id, manual.resolved_by, manual.note, manual.charged_minor) == (
        parked.saga_id, parked.order_id, "operator", "refunded by hand, FIN-7", 4999
    )

    # Planted: the audit record removed behind the API's back is a violation.
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.begin() as connection:
            await connection.execute(delete(saga_audit).where(saga_audit.c.saga_id == parked.saga_id))
    finally:
        await engine.dispose()
    violations = audit(await read_facts(database_url, stack.mongo_url), [], 100_000)
    assert [(v.check, v.subject.split()[0]) for v in violations] == [("manual-resolution-unaudited", parked.saga_id)]


async def test_who_may_call_each_rpc(tmp_path):
    async with running_order_stack(tmp_path, f"sqlite:///{tmp_path / 'orders.db'}") as stack:
        stub = admin(stack)
        calls: dict[str, Callable[[tuple[tuple[str, str], ...]], Awaitable[Any]]] = {
            "ListSagas": lambda md: stub.ListSagas(S.ListSagasRequest(), metadata=md),
            "GetSaga": lambda md: stub.GetSaga(S.GetSagaRequest(saga_id="saga_none"), metadata=md),
            "RetrySaga": lambda md: stub.RetrySaga(S.RetrySagaRequest(saga_id="saga_none"), metadata=md),
            "PauseSaga": lambda md: stub.PauseSaga(S.PauseSagaRequest(saga_id="saga_none"), metadata=md),
            "ResumeSaga": lambda md: stub.ResumeSaga(S.ResumeSagaRequest(saga_id="saga_none"), metadata=md),
            "ResolveSaga": lambda md: stub.ResolveSaga(
                S.ResolveSagaRequest(saga_id="saga_none", note="n"), metadata=md
            ),
            "RetrySagas": lambda md: stub.RetrySagas(S.RetrySagasRequest(rate_per_second=10), metadata=md),
            "ResumeSagas": lambda md: stub.ResumeSagas(S.ResumeSagasRequest(rate_per_second=10), metadata=md),
        }
        # In health like the order service's other service.
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        health = await health_pb2_grpc.HealthStub(stack.channel).Check(
            health_pb2.HealthCheckRequest(service="sagascope.admin.v1.SagaAdminService")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reads = {"ListSagas", "GetSaga"}
        outcomes: dict[tuple[str, str], grpc.StatusCode] = {}
        for method, call in calls.items():
            for who in ("nobody", "alice", "viewer", "operator", "admin"):
                md = () if who == "nobody" else stack.md(who)
                try:
                    await call(md)
                    outcomes[(method, who)] = grpc.StatusCode.OK
                except grpc.aio.AioRpcError as exc:
                    outcomes[(method, who)] = exc.code()
                    if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
                        role = "sagas.read" if method in reads else "sagas.operate"
                        assert f"lacks the role {role!r}" in exc.details()
        for method in calls:
            assert outcomes[(method, "nobody")] == grpc.StatusCode.UNAUTHENTICATED
            assert outcomes[(method, "alice")] == grpc.StatusCode.PERMISSION_DENIED
            assert outcomes[(method, "viewer")] == grpc.StatusCode.PERMISSION_DENIED
            expected = grpc.StatusCode.OK if method in {"ListSagas", "RetrySagas", "ResumeSagas"} else (
                grpc.StatusCode.NOT_FOUND
            )
            assert outcomes[(method, "operator")] == expected, method
            assert outcomes[(method, "admin")] == expected, method
