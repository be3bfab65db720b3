"""The services as real processes export traces and logs over OTLP/gRPC to a test receiver.

One stack (nx-27017, identity, payment, order on SQLite) per module, started with the
receiver's endpoint in ``OTEL_EXPORTER_OTLP_ENDPOINT``; the recovery test gets its own
stack because it SIGKILLs the order service.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from sagascope.cli.client import OrderClient, OrderResult, login, order_request
from sagascope.local.services import LocalStack, Ports
from tests.support.otlp_receiver import OtlpReceiver, ReceivedLog, ReceivedSpan

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

USER, PASSWORD = "alice", "alice-dev-password"  # DEVELOPMENT ONLY (sagascope/identity/demo_users.json)
SERVER, CLIENT = 2, 3  # OTLP span kinds
GRPC_SCOPE = "opentelemetry.instrumentation.grpc"
SQL_SCOPE = "opentelemetry.instrumentation.sqlalchemy"
MONGO_SCOPE = "opentelemetry.instrumentation.pymongo"


@dataclass
class Stack:
    stack: LocalStack
    receiver: OtlpReceiver
    client: OrderClient
    token: str

    async def order(self, *faults: str, amount: int = 2500) -> OrderResult:
        return await self.client.create_order(
            order_request(USER, f"e2e-{uuid.uuid4().hex[:12]}", amount_minor=amount), inject=faults
        )


def stack_env(receiver: OtlpReceiver, tmp: Path, **extra: str) -> dict[str, str]:
    return {
        **receiver.exporter_env(),
        "SAGASCOPE_FAULTS_ENABLED": "true",
        "SAGASCOPE_TELEMETRY_DIR": str(tmp / "telemetry"),
        "OTEL_TRACES_SAMPLER": "always_on",
        **extra,
    }


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("telemetry-e2e")
    with OtlpReceiver() as receiver:
        stack = LocalStack(tmp / "stack", Ports.free(), extra_env=stack_env(receiver, tmp))
        try:
            await stack.start()
            token = await login(stack.identity_target, USER, PASSWORD)
            client = OrderClient(stack.order_target, token)
            try:
                yield Stack(stack, receiver, client, token)
            finally:
                await client.close()
        finally:
            await stack.stop()


def http_login(port: int) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/auth/login", method="POST",
        data=json.dumps({"username": USER, "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return str(json.loads(reply.read())["access_token"])


def trace_of(spans: list[ReceivedSpan], trace_id: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.trace_id == trace_id]


def saga_span(spans: list[ReceivedSpan], correlation_id: str) -> ReceivedSpan:
    return next(
        s for s in spans if s.name == "saga CreateOrder" and s.attributes.get("correlation_id") == correlation_id
    )


def has_saga_finished(correlation_id: str):  # type: ignore[no-untyped-def]
    def check(spans: list[ReceivedSpan]) -> bool:
        return any(
            s.name == "saga CreateOrder"
            and s.attributes.get("correlation_id") == correlation_id
            and "saga.outcome" in s.attributes
            for s in spans
        )

    return check


async def wait_spans(receiver: OtlpReceiver, predicate, timeout: float = 20.0) -> list[ReceivedSpan]:  # type: ignore[no-untyped-def]
    return await asyncio.to_thread(receiver.wait_for_spans, predicate, timeout)


async def test_a_create_order_is_one_trace_across_order_and_payment(running: Stack) -> None:
    result = await running.order()
    assert result.status_name == "COMPLETED", result.message
    cid = result.correlation_id
    assert cid

    def complete(spans: list[ReceivedSpan]) -> bool:
        if not has_saga_finished(cid)(spans):
            return False
        members = trace_of(spans, saga_span(spans, cid).trace_id)
        return any(s.service == "payment-service" and s.kind == SERVER for s in members) and any(
            s.service == "payment-service" and s.attributes.get("db.system.name") == "mongodb" for s in members
        )

    spans = await wait_spans(running.receiver, complete)
    saga = saga_span(spans, cid)
    members = trace_of(spans, saga.trace_id)
    by_id = {s.span_id: s for s in members}

    def parent(span: ReceivedSpan) -> ReceivedSpan | None:
        return by_id.get(span.parent_span_id)

    assert {s.service for s in members} >= {"order-service", "payment-service"}
    order_server = parent(saga)
    assert order_server is not None and order_server.kind == SERVER
    assert order_server.name == "/sagascope.orders.v1.OrderService/CreateOrder"
    assert order_server.attributes["correlation_id"] == cid
    assert order_server.scope == GRPC_SCOPE  # the upstream instrumentation's span, not a copy
    assert saga.attributes["saga.outcome"] == "completed"
    assert saga.attributes["order.id"] == result.order.id  # type: ignore[union-attr]

    payment_server = next(s for s in members if s.service == "payment-service" and s.kind == SERVER)
    client_span = parent(payment_server)
    assert client_span is not None and client_span.kind == CLIENT and client_span.service == "order-service"
    assert client_span.scope == payment_server.scope == GRPC_SCOPE
    assert client_span.name == payment_server.name == "/sagascope.payments.v1.PaymentService/ProcessPayment"
    step = parent(client_span)
    assert step is not None and step.name.startswith("saga.step ") and parent(step) == saga
    assert payment_server.attributes["correlation_id"] == cid  # carried in baggage
    mongo = [s for s in members if s.attributes.get("db.system.name") == "mongodb"]
    assert mongo and all(parent(s) is not None and s.scope == MONGO_SCOPE for s in mongo)
    sql = [s for s in members if s.service == "order-service" and s.scope == SQL_SCOPE and s.name != "connect"]
    assert sql and all(s.attributes["db.system.name"] == "sqlite" and "db.query.text" in s.attributes for s in sql)
    assert not any("db.statement" in s.attributes or "db.system" in s.attributes for s in members)  # old names


async def test_a_compensated_saga_has_the_full_span_tree_and_correlated_logs(running: Stack) -> None:
    result = await running.order("confirm_failure")
    assert result.status_name == "CANCELLED", result.message
    cid = result.correlation_id
    spans = await wait_spans(
        running.receiver,
        lambda spans: (
            has_saga_finished(cid)(spans)
            and any(s.name.startswith("saga.compensate ") and s.attributes.get("saga.id") for s in spans)
            and any(
                s.service == "payment-service" and "Refund" in s.name
                for s in trace_of(spans, saga_span(spans, cid).trace_id)
            )
        ),
    )
    saga = saga_span(spans, cid)
    members = trace_of(spans, saga.trace_id)
    names = [s.name for s in members]
    steps = [s for s in members if s.name.startswith("saga.step ")]
    compensations = [s for s in members if s.name.startswith("saga.compensate ")]
    assert saga.attributes["saga.outcome"] == "compensated"
    failed = [s for s in steps if s.status_code == 2]
    assert len(failed) == 1 and failed[0].name == "saga.step confirm"
    assert any(name == "exception" or name == "saga.step.failure" for name, _ in failed[0].events)
    # Reverse order: the charge is refunded, then the reservation released.
    assert [s.name for s in sorted(compensations, key=lambda s: s.start_ns)] == [
        "saga.compensate charge",
        "saga.compensate reserve",
    ]
    for compensate in compensations:
        assert compensate.attributes["saga.compensation"] is True
        assert compensate.parent_span_id == saga.span_id
        assert [(link[0], link[1]) for link in compensate.links] == [(failed[0].trace_id, failed[0].span_id)]
        assert any(name == "saga.compensation.reason" for name, _ in compensate.events)
    refund = next(s for s in members if s.service == "payment-service" and "RefundPayment" in s.name)
    refund_client = next(s for s in members if s.span_id == refund.parent_span_id)
    assert next(s for s in members if s.span_id == refund_client.parent_span_id).name == "saga.compensate charge"
    assert any(s.service == "payment-service" and "RefundPayment" in s.name for s in members), names

    # Logs: every record of this saga shares its correlation id and trace id, from both services.
    def logs_done(logs: list[ReceivedLog]) -> bool:
        mine = [r for r in logs if r.attributes.get("correlation_id") == cid]
        return any(r.attributes.get("event") == "saga.finished" for r in mine) and any(
            r.service == "payment-service" for r in mine
        )

    logs = await asyncio.to_thread(running.receiver.wait_for_logs, logs_done, 20.0)
    mine = [r for r in logs if r.attributes.get("correlation_id") == cid]
    assert {r.service for r in mine} >= {"order-service", "payment-service"}
    assert {r.trace_id for r in mine} == {saga.trace_id}
    events = {r.attributes.get("event") for r in mine}
    assert {
        "saga.started",
        "saga.step.failed",
        "saga.compensation.started",
        "saga.compensation.completed",
        "saga.finished",
    } <= events
    saga_records = [r for r in mine if str(r.attributes.get("event", "")).startswith("saga.")]
    assert all(r.attributes.get("saga.id") == saga.attributes["saga.id"] for r in saga_records)


async def test_metrics_expose_every_contract_metric_and_a_saga_exemplar(running: Stack) -> None:
    await running.order()
    url = f"http://127.0.0.1:{running.stack.ports.order_metrics}/metrics"
    request = urllib.request.Request(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(request, timeout=5).read().decode())
    for name in (
        "saga_started_total",
        "saga_finished_total",
        "saga_duration_seconds_bucket",
        "saga_step_duration_seconds_bucket",
        "saga_compensations_total",
        "saga_in_flight",
        "grpc_server_started_total",
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
        "grpc_client_started_total",
        "grpc_client_handled_total",
        "grpc_client_handling_seconds_bucket",
        "circuit_breaker_state",
        "process_cpu_seconds_total",
    ):
        assert re.search(rf"^{name}\{{", text, re.M) or re.search(rf"^{name} ", text, re.M), name
    assert re.search(r'^saga_finished_total\{outcome="completed",saga="CreateOrder"\} ', text, re.M)
    assert re.search(
        r'^grpc_client_handled_total\{grpc_code="OK",grpc_method="ProcessPayment",'
        r'grpc_service="sagascope.payments.v1.PaymentService",grpc_type="unary"\}',
        text,
        re.M,
    )
    assert re.search(r'^circuit_breaker_state\{target="payment-service"\} 0', text, re.M)
    assert re.search(r'^saga_duration_seconds_bucket\{.*\} \S+ # \{trace_id="[0-9a-f]{32}"\}', text, re.M)
    payment_metrics = f"http://127.0.0.1:{running.stack.ports.payment_metrics}/metrics"
    payment = await asyncio.to_thread(lambda: urllib.request.urlopen(payment_metrics, timeout=5).read().decode())
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="ProcessPayment"' in payment


async def test_no_password_token_or_authorization_value_is_exported(running: Stack) -> None:
    await running.order()
    await running.order("confirm_failure")
    http_token = await asyncio.to_thread(http_login, running.stack.ports.identity_http)
    await asyncio.sleep(1.0)  # a batch interval or two
    exported = "".join(s.raw for s in running.receiver.spans()) + "".join(r.raw for r in running.receiver.logs())
    assert running.receiver.spans() and running.receiver.logs()
    assert any(s.service == "identity-service" for s in running.receiver.spans())  # the login was traced
    http_spans = [s for s in running.receiver.spans() if s.service == "identity-service" and s.kind == SERVER
                  and "/auth/login" in s.raw]
    assert http_spans, "the HTTP /auth/login request has a server span"
    assert http_token not in exported and http_token.split(".")[2] not in exported
    assert PASSWORD not in exported
    assert running.token not in exported
    assert running.token.split(".")[2] not in exported  # not even the signature
    for port in (
        running.stack.ports.order_metrics,
        running.stack.ports.payment_metrics,
        running.stack.ports.identity_metrics,
    ):
        metrics = await asyncio.to_thread(
            lambda p=port: urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=5).read().decode()
        )
        assert PASSWORD not in metrics and running.token not in metrics


@pytest.mark.asyncio(loop_scope="function")
async def test_a_recovered_saga_links_to_the_original_trace(tmp_path: Path) -> None:
    with OtlpReceiver() as receiver:
        env = stack_env(
            receiver,
            tmp_path,
            SAGASCOPE_FAULT_LATENCY_MS="4000",
            ORDER_SAGA_LEASE_SECONDS="1",
            ORDER_RECOVERY_INTERVAL_SECONDS="0.3",
        )
        stack = LocalStack(tmp_path / "stack", Ports.free(), extra_env=env)
        try:
            await stack.start()
            token = await login(stack.identity_target, USER, PASSWORD)
            client = OrderClient(stack.order_target, token)
            try:
                cid = f"recover-{uuid.uuid4().hex[:8]}"
                call = asyncio.create_task(
                    client.create_order(
                        order_request(USER, f"e2e-{cid}"), inject=("confirm_latency",), correlation_id=cid
                    )
                )
                # The charge is done and confirm is sleeping: its spans are exported as they end.
                await wait_spans(
                    receiver,
                    lambda spans: any(s.name == "saga.step charge" and s.service == "order-service" for s in spans),
                )
                stack.kill("order")
                result = await call
                assert result.code.name == "UNAVAILABLE"
            finally:
                await client.close()
            await stack.start_one("order")
            spans = await wait_spans(
                receiver,
                lambda spans: any(
                    s.name == "saga CreateOrder" and s.attributes.get("saga.resumed") and "saga.outcome" in s.attributes
                    for s in spans
                ),
                timeout=30.0,
            )
        finally:
            await stack.stop()
    charge = next(s for s in spans if s.name == "saga.step charge" and s.service == "order-service")
    resumed = next(s for s in spans if s.name == "saga CreateOrder" and s.attributes.get("saga.resumed"))
    assert resumed.trace_id != charge.trace_id
    assert resumed.attributes["correlation_id"] == cid
    # The original saga span never ended (the process died), so the link names its trace.
    assert any(link[0] == charge.trace_id and link[1] == charge.parent_span_id for link in resumed.links)
    resumed_children = [s for s in spans if s.trace_id == resumed.trace_id and s.parent_span_id == resumed.span_id]
    assert resumed_children, "the resumed run's steps are children of the new saga span"
