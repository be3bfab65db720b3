"""The chaos campaign's pure parts: the seeded schedule and workload, the gate, and the auditor's rules."""

from __future__ import annotations

import asyncio

from tools.chaos.auditor import (
    Facts,
    OrderFact,
    PaymentFact,
    SagaFact,
    audit,
    check_replies,
    check_state,
    manual_resolutions,
)
from tools.chaos.injector import Gate
from tools.chaos.schedule import Lane, NetworkFault, ProcessFault, Target, all_kinds, build_schedule
from tools.chaos.workload import ClientReply, build_workload, should_retry

LIMIT = 100_000


# --- schedule and workload ------------------------------------------------------------------------


def test_every_fault_kind_is_scheduled_within_the_window_in_order() -> None:
    events = build_schedule(seed=3, sagas=300)
    assert sorted(e.kind for e in events) == sorted(all_kinds())
    assert all(9 <= e.at_saga <= 255 for e in events)
    assert [e.at_saga for e in events] == sorted(e.at_saga for e in events)
    assert {e.kind for e in events if isinstance(e, ProcessFault)} >= {"SIGKILL order", "SIGKILL order-2",
                                                                       "restart postgres", "SIGKILL mongo"}


def test_long_campaigns_repeat_each_kind_and_the_seed_decides_everything() -> None:
    events = build_schedule(seed=7, sagas=2000)
    assert len(events) == 2 * len(all_kinds())
    assert events == build_schedule(seed=7, sagas=2000)
    assert events != build_schedule(seed=8, sagas=2000)
    network = [e for e in events if e.lane is Lane.NETWORK]
    assert all(isinstance(e, NetworkFault) and 1.5 <= e.hold_s <= 3.5 for e in network)


def test_workload_is_seeded_and_mixes_duplicates_faults_and_declines() -> None:
    plans = build_workload(seed=7, sagas=1000)
    assert plans == build_workload(seed=7, sagas=1000)
    assert len({p.key for p in plans}) == 1000
    assert 60 < sum(p.copies > 1 for p in plans) < 200
    assert 150 < sum(bool(p.faults) for p in plans) < 350
    assert 10 < sum(p.total_minor > LIMIT for p in plans) < 80
    assert all(p.total_minor <= LIMIT for p in plans if p.amount_minor != 150_000)


def test_clients_retry_only_inconclusive_errors() -> None:
    import grpc

    assert should_retry(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    assert should_retry(grpc.StatusCode.INTERNAL, "internal error; quote correlation id x")
    # The server said what became of the order: same answer again, so no retry.
    assert not should_retry(grpc.StatusCode.UNAVAILABLE, "... was cancelled; retry with a new idempotency_key")
    assert not should_retry(grpc.StatusCode.INVALID_ARGUMENT, "items: at least one item is required")


async def test_gate_holds_the_workload_until_the_due_fault_started() -> None:
    event = ProcessFault(Target.PAYMENT, at_saga=2, down_s=0.0)
    gate = Gate([event])
    await gate.admit(0)
    await gate.admit(1)
    blocked = asyncio.create_task(gate.admit(2))
    await asyncio.wait_for(gate.due(event), 1)  # two sagas issued: the fault is due
    await asyncio.sleep(0.05)
    assert not blocked.done()
    gate.started(event)
    await asyncio.wait_for(blocked, 1)


# --- auditor --------------------------------------------------------------------------------------


def _facts() -> Facts:
    return Facts(
        orders=[
            OrderFact("ord_a", "alice", "k1", "EUR", 500, "COMPLETED", "pay_a", "saga_a"),
            OrderFact("ord_b", "alice", "k2", "EUR", 700, "CANCELLED", "pay_b", "saga_b"),
            OrderFact("ord_c", "bob", "k3", "EUR", 900, "CANCELLED", "", "saga_c"),
        ],
        sagas=[SagaFact("saga_a", "COMPLETED", "ord_a"), SagaFact("saga_b", "COMPENSATED", "ord_b"),
               SagaFact("saga_c", "COMPENSATED", "ord_c")],
        payments=[
            PaymentFact("pay_a", "ord_a", 500, "EUR", "CHARGED", "saga_a:charge"),
            PaymentFact("pay_b", "ord_b", 700, "EUR", "REFUNDED", "saga_b:charge"),
            PaymentFact("pay_c", "", 0, "", "VOIDED", "saga_c:charge"),
        ],
    )


def test_a_consistent_state_has_no_violations() -> None:
    assert check_state(_facts(), LIMIT) == []


def test_money_and_saga_violations_name_their_ids() -> None:
    facts = _facts()
    facts.payments.append(PaymentFact("pay_x", "ord_a", 500, "EUR", "CHARGED", "saga_a:charge"))  # double charge
    facts.payments.append(PaymentFact("pay_y", "ord_b", 700, "EUR", "CHARGED", "saga_b:charge"))  # kept on cancel
    facts.payments.append(PaymentFact("pay_z", "ord_gone", 100, "EUR", "CHARGED", "saga_gone:charge"))
    facts.payments.append(PaymentFact("pay_v", "", 0, "", "VOIDED", "saga_nowhere:charge"))
    facts.sagas[2] = SagaFact("saga_c", "FAILED", "ord_c", "compensation pending")
    found = {(v.check, v.subject.split()[0]) for v in check_state(facts, LIMIT)}
    assert found == {
        ("completed-charge", "ord_a"),
        ("cancelled-charge", "ord_b"),
        ("orphan-payment", "pay_z"),
        ("orphan-payment", "pay_v"),
        ("saga-not-terminal", "saga_c"),
        ("order-saga-mismatch", "ord_c"),
    }


def test_a_manual_resolution_is_reported_as_such_and_needs_its_audit_record() -> None:
    facts = _facts()
    # Finance refunded ord_b by hand: the payment stays CHARGED here, the saga was resolved (audited).
    facts.payments[1] = PaymentFact("pay_b", "ord_b", 700, "EUR", "CHARGED", "saga_b:charge")
    facts.sagas[1] = SagaFact("saga_b", "COMPENSATED", "ord_b", "", "manual", "operator", "refunded, FIN-1")
    assert check_state(facts, LIMIT) == []
    (resolved,) = manual_resolutions(facts)
    assert (resolved.saga_id, resolved.resolved_by, resolved.note, resolved.charged_minor) == (
        "saga_b", "operator", "refunded, FIN-1", 700
    )
    facts.sagas[1] = SagaFact("saga_b", "COMPENSATED", "ord_b", "", "manual")  # no audit record
    assert [(v.check, v.subject.split()[0]) for v in check_state(facts, LIMIT)] == [
        ("manual-resolution-unaudited", "saga_b")
    ]
    facts.sagas[1] = SagaFact("saga_b", "COMPENSATED", "ord_b")  # not resolved by hand: the charge is a violation
    assert [v.check for v in check_state(facts, LIMIT)] == ["cancelled-charge"]


def _reply(key: str, code: str, status: str = "", order_id: str = "", message: str = "") -> ClientReply:
    return ClientReply(0, "alice", key, 0, 1, code, order_id, status, message, 0.1)


def test_reply_rules() -> None:
    facts = _facts()
    fine = [
        _reply("k1", "OK", "COMPLETED", "ord_a"),
        _reply("k1", "OK", "PENDING", "ord_a"),
        _reply("k2", "OK", "FAILED", "ord_b"),
        _reply("k2", "UNAVAILABLE", message="payment-service unavailable; order ord_b was cancelled and nothing "
                                            "stays charged; retry with a new idempotency_key"),
        _reply("k2", "DEADLINE_EXCEEDED"),
        _reply("k-never-reserved", "INTERNAL", message="internal error"),
    ]
    assert check_replies(facts, fine) == []
    wrong = [
        _reply("k2", "OK", "COMPLETED", "ord_b"),  # told COMPLETED, ended CANCELLED
        _reply("k1", "OK", "CANCELLED", "ord_a"),  # told CANCELLED, ended COMPLETED
        _reply("k1", "OK", "COMPLETED", "ord_other"),  # an order the key did not make
        _reply("k1", "UNAVAILABLE", message="order ord_a was cancelled and nothing stays charged"),
        _reply("k1", "ALREADY_EXISTS", message="idempotency_key 'k1' was already used for a different order"),
    ]
    assert len(check_replies(facts, wrong)) == len(wrong)
    assert len(audit(facts, wrong, LIMIT)) == len(wrong)


def test_over_limit_orders_never_complete() -> None:
    facts = _facts()
    facts.orders[0] = OrderFact("ord_a", "alice", "k1", "EUR", LIMIT + 1, "COMPLETED", "pay_a", "saga_a")
    facts.payments[0] = PaymentFact("pay_a", "ord_a", LIMIT + 1, "EUR", "CHARGED", "saga_a:charge")
    assert {v.check for v in check_state(facts, LIMIT)} == {"over-limit-completed"}
