"""The payment service over a real gRPC socket, against a real identity service and two real
MongoDB-wire servers: nx-27017 (SQLite) and FerretDB (PostgreSQL; tests/support/ferretdb.py).
Every test that touches storage runs on both (ids ``[nx-27017]`` / ``[ferretdb]``)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.trace import SpanKind

from sagascope.api.payments.v1 import payments_pb2, payments_pb2_grpc
from sagascope.common.auth import AuthSettings
from sagascope.common.faults import FaultSettings
from sagascope.common.telemetry import Telemetry
from sagascope.payment.server import PaymentApp
from sagascope.payment.settings import PaymentSettings
from sagascope.payment.store import MongoUnavailable
from tests.support import ferretdb
from tests.support import postgres as pg_support
from tests.support.identity import running_identity
from tests.support.mongo import free_port, running_nx27017
from tests.support.telemetry_testing import in_memory_telemetry

pb = payments_pb2
MONGO_SCOPE = "opentelemetry.instrumentation.pymongo"
SERVICE_ACCOUNT = ("order-service", "order-service-dev-secret")
VIEWER = ("viewer", "viewer-dev-password")


@dataclass
class Harness:
    app: PaymentApp
    channel: grpc.aio.Channel
    stub: payments_pb2_grpc.PaymentServiceStub
    metadata: tuple[tuple[str, str], ...]
    login: Callable[[str, str], Awaitable[str]]

    async def process(self, **fields: object) -> pb.Payment:
        body: dict[str, Any] = {
            "order_id": "order-1",
            "amount_minor": 12_345,
            "currency": "EUR",
            "idempotency_key": "charge-1",
        }
        body.update(fields)
        reply = await self.stub.ProcessPayment(
            pb.ProcessPaymentRequest(**body), metadata=self.metadata, timeout=10
        )
        return reply.payment

    async def refund(self, **fields: str) -> pb.Payment:
        body = {"idempotency_key": "refund-1", "reason": "confirm failed", **fields}
        reply = await self.stub.RefundPayment(
            pb.RefundPaymentRequest(**body), metadata=self.metadata, timeout=10
        )
        return reply.payment

    async def count(self, **query: object) -> int:
        return int(await self.app.store._collection.count_documents(query))


StartPayment = Callable[..., Awaitable[Harness]]
MONGO_SERVERS = ["nx-27017", "ferretdb"]


@pytest.fixture(scope="module")
def ferretdb_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One FerretDB for the module (each test gets its own database in it)."""
    if os.environ.get("PAYMENT_MONGO_URL"):
        yield os.environ["PAYMENT_MONGO_URL"]
        return
    reason = ferretdb.unavailable_reason()
    if reason:
        if os.environ.get("SAGASCOPE_REQUIRE_FERRETDB") == "1":
            pytest.fail(f"required: {reason}")
        pytest.skip(reason)
    with (
        pg_support.throwaway_cluster() as cluster,
        ferretdb.running_ferretdb(tmp_path_factory.mktemp("ferretdb"),
                                  pg_support.fresh_database(cluster, "ferretdb")) as url,
    ):
        yield url


@pytest.fixture(params=MONGO_SERVERS)
async def mongo(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """(URL, database) on each MongoDB-wire server: a fresh nx-27017 per test, or a fresh database
    in the module's FerretDB."""
    if request.param == "nx-27017":
        async with running_nx27017(tmp_path / "mongo") as url:
            yield url, "payments_test"
    else:
        yield request.getfixturevalue("ferretdb_url"), f"payments_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def start_payment(tmp_path: Path, mongo: tuple[str, str]) -> AsyncIterator[StartPayment]:
    """Start identity once per test; ``await start_payment(faults=...)`` starts payment on ``mongo``."""
    url, database = mongo
    async with running_identity(tmp_path / "identity") as identity:
        token = await identity.login(*SERVICE_ACCOUNT)
        started: list[Harness] = []

        async def start(
            faults: FaultSettings | None = None, limit_major: int = 1000, telemetry: Telemetry | None = None
        ) -> Harness:
            settings = PaymentSettings(
                auth=identity.auth_settings,
                host="127.0.0.1",
                grpc_port=0,
                mongo_url=url,
                mongo_db=database,
                mongo_connect_timeout_seconds=10,
                limit_major=limit_major,
                faults=faults or FaultSettings(),
            )
            app = PaymentApp(settings, telemetry)
            port = await app.start()
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            harness = Harness(
                app,
                channel,
                payments_pb2_grpc.PaymentServiceStub(channel),
                (("authorization", f"Bearer {token}"),),
                identity.login,
            )
            started.append(harness)
            return harness

        try:
            yield start
        finally:
            for harness in started:
                await harness.channel.close()
                await harness.app.stop()


@pytest.fixture
async def payment(start_payment: StartPayment) -> Harness:
    return await start_payment()


async def expect_error(call: Awaitable[object], code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details() or ""


# --- charging -----------------------------------------------------------------------------------


async def test_charge(payment: Harness) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    charged = await payment.process()
    assert charged.status == pb.PAYMENT_STATUS_CHARGED
    assert (charged.order_id, charged.amount_minor, charged.currency) == ("order-1", 12_345, "EUR")
    assert charged.idempotency_key == "charge-1" and charged.decline_reason == ""
    assert len(charged.id) == 32
    assert charged.created_at.ToDatetime(tzinfo=UTC) > before

    got = await payment.stub.GetPayment(
        pb.GetPaymentRequest(payment_id=charged.id), metadata=payment.metadata
    )
    assert got.payment == charged


async def test_decline_above_the_limit_is_a_reply_not_an_error(payment: Harness) -> None:
    declined = await payment.process(amount_minor=150_000)
    assert declined.status == pb.PAYMENT_STATUS_DECLINED
    assert declined.decline_reason == "amount 1500.00 EUR exceeds the limit of 1000.00 EUR"


async def test_limit_uses_the_currency_exponent(payment: Harness) -> None:
    assert (await payment.process(amount_minor=1_000, currency="JPY")).status == pb.PAYMENT_STATUS_CHARGED
    declined = await payment.process(amount_minor=1_001, currency="JPY", idempotency_key="charge-2")
    assert declined.decline_reason == "amount 1001 JPY exceeds the limit of 1000 JPY"


async def test_same_key_twice_returns_the_same_payment(payment: Harness) -> None:
    first = await payment.process()
    second = await payment.process()
    assert second == first
    assert await payment.count(idempotency_key="charge-1") == 1


async def test_same_key_declined_twice_stays_declined(payment: Harness) -> None:
    first = await payment.process(amount_minor=150_000)
    assert await payment.process(amount_minor=150_000) == first


async def test_same_key_different_body_is_already_exists(payment: Harness) -> None:
    await payment.process()
    details = await expect_error(payment.process(amount_minor=999), grpc.StatusCode.ALREADY_EXISTS)
    assert details == (
        "idempotency_key 'charge-1' was already used for a different payment "
        "(order_id/amount/currency differ)"
    )
    await expect_error(payment.process(order_id="order-2"), grpc.StatusCode.ALREADY_EXISTS)
    await expect_error(payment.process(currency="USD"), grpc.StatusCode.ALREADY_EXISTS)
    assert await payment.count(idempotency_key="charge-1") == 1


async def test_concurrent_duplicates_make_one_payment(payment: Harness) -> None:
    results = await asyncio.gather(*(payment.process(idempotency_key="race") for _ in range(20)))
    assert {p.id for p in results} == {results[0].id}
    assert all(p.status == pb.PAYMENT_STATUS_CHARGED for p in results)
    assert await payment.count(idempotency_key="race") == 1


# --- refunds ------------------------------------------------------------------------------------


async def test_refund(payment: Harness) -> None:
    charged = await payment.process()
    refunded = await payment.refund(payment_id=charged.id)
    assert refunded.id == charged.id
    assert refunded.status == pb.PAYMENT_STATUS_REFUNDED
    assert refunded.refund_reason == "confirm failed"
    assert refunded.updated_at.ToDatetime() >= charged.updated_at.ToDatetime()
    got = await payment.stub.GetPayment(
        pb.GetPaymentRequest(payment_id=charged.id), metadata=payment.metadata
    )
    assert got.payment == refunded
    stored = await payment.app.store.get(charged.id)
    assert stored is not None and stored.refund_idempotency_key == "refund-1"
    assert isinstance(stored.updated_at, datetime) and stored.updated_at.tzinfo is not None


async def test_double_refund_is_idempotent(payment: Harness) -> None:
    charged = await payment.process()
    first = await payment.refund(payment_id=charged.id)
    second = await payment.refund(payment_id=charged.id)
    assert second == first
    # And a refund by charge key after it finds the same refunded payment.
    assert await payment.refund(charge_idempotency_key="charge-1") == first


async def test_concurrent_refunds_refund_once(payment: Harness) -> None:
    charged = await payment.process()
    results = await asyncio.gather(
        *(payment.refund(payment_id=charged.id, idempotency_key=f"refund-{i}") for i in range(10))
    )
    assert all(r.status == pb.PAYMENT_STATUS_REFUNDED for r in results)
    assert len({r.updated_at.ToNanoseconds() for r in results}) == 1  # one update, seen by all
    stored = await payment.app.store.get(charged.id)
    assert stored is not None and stored.refund_idempotency_key in {f"refund-{i}" for i in range(10)}
    assert await payment.app.store._claims.count_documents({}) == 1


async def test_a_refund_whose_claimant_died_is_finished_by_the_next(payment: Harness) -> None:
    """A refund that claimed the payment and died before updating it (the claim is there, the payment
    still CHARGED) is finished by the next refund, with the first one's key and reason."""
    charged = await payment.process()
    died_at = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    await payment.app.store._claims.insert_one(
        {"_id": charged.id, "refund_idempotency_key": "refund-died", "refund_reason": "confirm failed", "at": died_at}
    )
    refunded = await payment.refund(payment_id=charged.id, idempotency_key="refund-next", reason="again")
    assert refunded.status == pb.PAYMENT_STATUS_REFUNDED and refunded.refund_reason == "confirm failed"
    stored = await payment.app.store.get(charged.id)
    assert stored is not None and stored.refund_idempotency_key == "refund-died" and stored.updated_at == died_at
    # A refund cancelled by its caller's deadline after its claim is this case too: nobody waits for it.


async def test_refund_of_a_declined_payment_is_failed_precondition(payment: Harness) -> None:
    declined = await payment.process(amount_minor=150_000)
    details = await expect_error(payment.refund(payment_id=declined.id), grpc.StatusCode.FAILED_PRECONDITION)
    assert details == f"payment {declined.id} was declined; there is nothing to refund"


async def test_refund_of_an_unknown_payment_is_not_found(payment: Harness) -> None:
    details = await expect_error(payment.refund(payment_id="no-such-payment"), grpc.StatusCode.NOT_FOUND)
    assert "no-such-payment" in details


async def test_refund_by_charge_key_refunds_the_charge(payment: Harness) -> None:
    charged = await payment.process()
    refunded = await payment.refund(charge_idempotency_key="charge-1")
    assert (refunded.id, refunded.status) == (charged.id, pb.PAYMENT_STATUS_REFUNDED)


async def test_refund_by_charge_key_of_a_declined_charge_returns_it(payment: Harness) -> None:
    declined = await payment.process(amount_minor=150_000)
    assert await payment.refund(charge_idempotency_key="charge-1") == declined


async def test_refund_by_unknown_charge_key_fences_the_key(payment: Harness) -> None:
    voided = await payment.refund(charge_idempotency_key="never-charged")
    assert voided.status == pb.PAYMENT_STATUS_VOIDED
    assert voided.idempotency_key == "never-charged"
    assert await payment.refund(charge_idempotency_key="never-charged") == voided  # idempotent

    late = await payment.process(idempotency_key="never-charged")
    assert late == voided
    assert await payment.count(idempotency_key="never-charged") == 1
    assert await payment.count(status="CHARGED") == 0
    # Refunding the tombstone by its id is also "already done".
    assert await payment.refund(payment_id=voided.id) == voided


async def test_charge_racing_a_refund_by_key_never_leaves_a_charge(payment: Harness) -> None:
    for i in range(10):
        key = f"race-{i}"
        charge, refund = await asyncio.gather(
            payment.process(idempotency_key=key), payment.refund(charge_idempotency_key=key)
        )
        assert refund.status in (pb.PAYMENT_STATUS_VOIDED, pb.PAYMENT_STATUS_REFUNDED)
        assert charge.id == refund.id
        assert await payment.count(idempotency_key=key) == 1
    assert await payment.count(status="CHARGED") == 0


@pytest.mark.parametrize(
    "fields",
    [{}, {"payment_id": "p", "charge_idempotency_key": "k"}],
    ids=["neither", "both"],
)
async def test_refund_needs_exactly_one_target(payment: Harness, fields: dict[str, str]) -> None:
    details = await expect_error(payment.refund(**fields), grpc.StatusCode.INVALID_ARGUMENT)
    assert "payment_id" in details and "charge_idempotency_key" in details


async def test_refund_needs_an_idempotency_key(payment: Harness) -> None:
    details = await expect_error(
        payment.refund(payment_id="p", idempotency_key=""), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert details.startswith("idempotency_key:")


async def test_get_unknown_payment_is_not_found(payment: Harness) -> None:
    await expect_error(
        payment.stub.GetPayment(pb.GetPaymentRequest(payment_id="nope"), metadata=payment.metadata),
        grpc.StatusCode.NOT_FOUND,
    )


# --- validation, auth, faults, health ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"order_id": ""}, "order_id"),
        ({"order_id": "has space"}, "order_id"),
        ({"amount_minor": 0}, "amount_minor"),
        ({"amount_minor": -5}, "amount_minor"),
        ({"amount_minor": 10**15}, "amount_minor"),
        ({"currency": ""}, "currency"),
        ({"currency": "XXX"}, "currency"),
        ({"currency": "eur"}, "currency"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "k" * 129}, "idempotency_key"),
    ],
)
async def test_validation_errors_name_the_field(
    payment: Harness, fields: dict[str, object], field: str
) -> None:
    details = await expect_error(payment.process(**fields), grpc.StatusCode.INVALID_ARGUMENT)
    assert details.startswith(f"{field}:"), details
    assert await payment.count() == 0


async def test_without_a_token_is_unauthenticated(payment: Harness) -> None:
    await expect_error(
        payment.stub.ProcessPayment(
            pb.ProcessPaymentRequest(order_id="o", amount_minor=1, currency="EUR", idempotency_key="k")
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await expect_error(
        payment.stub.GetPayment(pb.GetPaymentRequest(payment_id="p")), grpc.StatusCode.UNAUTHENTICATED
    )


async def test_viewer_is_permission_denied(payment: Harness) -> None:
    viewer = (("authorization", f"Bearer {await payment.login(*VIEWER)}"),)
    await expect_error(
        payment.stub.ProcessPayment(
            pb.ProcessPaymentRequest(order_id="o", amount_minor=1, currency="EUR", idempotency_key="k"),
            metadata=viewer,
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        payment.stub.GetPayment(pb.GetPaymentRequest(payment_id="p"), metadata=viewer),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert await payment.count() == 0


async def test_fault_header_declines_when_faults_are_enabled(start_payment: StartPayment) -> None:
    payment = await start_payment(faults=FaultSettings(enabled=True))
    payment.metadata = (*payment.metadata, ("x-sagascope-fault", "payment_decline"))
    declined = await payment.process()
    assert declined.status == pb.PAYMENT_STATUS_DECLINED
    assert declined.decline_reason == "declined by fault injection"


async def test_fault_header_is_ignored_when_faults_are_disabled(payment: Harness) -> None:
    payment.metadata = (*payment.metadata, ("x-sagascope-fault", "payment_decline"))
    assert (await payment.process()).status == pb.PAYMENT_STATUS_CHARGED


async def test_latency_fault_delays_the_charge(start_payment: StartPayment) -> None:
    payment = await start_payment(faults=FaultSettings(enabled=True, latency_ms=300))
    payment.metadata = (*payment.metadata, ("x-sagascope-fault", "payment_latency"))
    started = asyncio.get_running_loop().time()
    assert (await payment.process()).status == pb.PAYMENT_STATUS_CHARGED
    assert asyncio.get_running_loop().time() - started >= 0.3


# One server only: the instrumentor is process-wide (below), and the spans come from PyMongo's command
# events, whichever server answers.
@pytest.mark.parametrize("mongo", ["nx-27017"], indirect=True)
async def test_process_payment_yields_the_pymongo_command_spans(start_payment: StartPayment) -> None:
    """PyMongo's async client publishes the same command events motor's threads did, so
    opentelemetry-instrumentation-pymongo's listener makes one CLIENT span per command, now in the
    calling task: a child of the call's SERVER span. (The instrumentor is a process-wide singleton
    whose listener keeps the first tracer provider it was given: this must stay the only test in
    its process that instruments pymongo.)"""
    with in_memory_telemetry("payment-service") as captured:
        captured.telemetry.instrument_pymongo()  # before the client exists, as serve() does
        payment = await start_payment(telemetry=captured.telemetry)
        charged = await payment.process(idempotency_key="traced-charge")
        refunded = await payment.refund(payment_id=charged.id, idempotency_key="traced-refund")
        assert refunded.status == pb.PAYMENT_STATUS_REFUNDED
        captured.telemetry.force_flush()
        spans = captured.spans.get_finished_spans()
    server = {s.name.rsplit("/", 1)[-1]: s for s in spans if s.kind is SpanKind.SERVER}
    mongo = [s for s in spans if s.instrumentation_scope and s.instrumentation_scope.name == MONGO_SCOPE]
    by_parent = {
        method: [s for s in mongo if s.parent is not None and s.parent.span_id == span.context.span_id]
        for method, span in server.items()
    }
    # One insert per new charge (payment inserts first); a refund reads the payment, then flips it.
    assert [s.name for s in by_parent["ProcessPayment"]] == ["payments_test.insert"]
    # the refund: read the payment, insert its refund claim (the unique key that decides a race),
    # then mark it refunded
    assert [s.name for s in by_parent["RefundPayment"]] == [
        "payments_test.find",
        "payments_test.insert",
        "payments_test.findAndModify",
    ]
    insert = by_parent["ProcessPayment"][0]
    assert insert.kind is SpanKind.CLIENT and insert.context.trace_id == server["ProcessPayment"].context.trace_id
    attributes = dict(insert.attributes or {})
    assert attributes["db.system.name"] == "mongodb" and attributes["db.namespace"] == "payments_test"
    assert attributes["db.collection.name"] == "payments" and attributes["server.address"] == "127.0.0.1"


async def test_health_is_serving_after_start(payment: Harness) -> None:
    health = health_pb2_grpc.HealthStub(payment.channel)
    for service in ("", "sagascope.payments.v1.PaymentService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_start_fails_clearly_when_mongo_is_unreachable(tmp_path: Path) -> None:
    settings = PaymentSettings(
        auth=AuthSettings(),
        grpc_port=0,
        mongo_url=f"mongodb://payments:s3cret@127.0.0.1:{free_port()}",
        mongo_connect_timeout_seconds=1,
    )
    app = PaymentApp(settings)
    started = asyncio.get_running_loop().time()
    with pytest.raises(MongoUnavailable) as caught:
        await app.start()
    assert asyncio.get_running_loop().time() - started < 5  # bounded by the budget, not the driver
    message = str(caught.value)
    assert "PAYMENT_MONGO_URL" in message and "PAYMENT_MONGO_CONNECT_TIMEOUT_SECONDS" in message
    assert "s3cret" not in message and "payments:***@" in message
