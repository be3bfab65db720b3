"""The game-day scenarios: what breaks, how, and where an operator should start looking.

Each scenario's answer (which alerts fire, the trace shape, the log events) is NOT here: it
lives in ``observability/gamedays/<name>.yaml``, which the e2e tier checks against the real
backends and an operator reads only after investigating.

Faults are switched on at run time through the services' fault file (``SAGASCOPE_FAULTS_FILE``,
sagascope.common.faults), so background work such as recovery sees them too; process faults
kill a real process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Action(StrEnum):
    NONE = "none"
    KILL_PAYMENT = "kill-payment"  # SIGKILL payment; lifting restarts it
    KILL_ORDER_REPLICA = "kill-order-replica"  # SIGKILL the second order replica mid-saga


@dataclass(frozen=True)
class Scenario:
    name: str
    # What the on-call person hears, not the cause.
    report: str
    faults: Mapping[str, float] = field(default_factory=dict)
    action: Action = Action.NONE
    # Orders go to the second order replica (the one that gets killed) instead of the first.
    traffic_to_replica: bool = False
    # Faults switched off as soon as the action has happened (they only set the scene).
    faults_only_before_action: bool = False
    look_at: tuple[str, ...] = ()


START_HERE = (
    "Grafana: the 'SLOs' dashboard, then 'Saga overview', 'Service RED' and 'Resilience'",
    "Prometheus alerts: {prometheus}/alerts",
)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "payment-latency",
        "Checkout has become slow and customers see cancelled orders.",
        faults={"payment_latency": 1.0},
        look_at=(
            "which step of the saga takes the time (Saga overview: step duration, follow an exemplar)",
            "what the order service does when a call runs out of time (Resilience)",
        ),
    ),
    Scenario(
        "payment-down",
        "Every order is cancelled; nobody is being charged.",
        action=Action.KILL_PAYMENT,
        look_at=(
            "the state of the order service's calls to its downstreams (Resilience)",
            "whether every service is being scraped (Prometheus targets / the up metric)",
        ),
    ),
    Scenario(
        "confirm-failures",
        "Many orders end cancelled although the payment went through.",
        faults={"confirm_failure": 0.5},
        look_at=(
            "the outcomes of finished sagas (Saga overview)",
            "one cancelled order's trace in Jaeger: which step failed, and what was undone",
        ),
    ),
    Scenario(
        "stuck-compensation",
        "Finance reports customers charged for orders that were cancelled.",
        faults={"confirm_failure": 1.0, "refund_failure": 1.0},
        look_at=(
            "sagas that have not finished (Saga overview: the saga-log panels; sagascope sagas list)",
            "what recovery is doing about them, in the order service's logs (Kibana / sagascope logs)",
        ),
    ),
    Scenario(
        "order-replica-killed",
        "One order-service replica crashed while taking orders.",
        faults={"confirm_latency": 1.0},
        action=Action.KILL_ORDER_REPLICA,
        traffic_to_replica=True,
        faults_only_before_action=True,
        look_at=(
            "sagas that stopped moving, and in which step (Saga overview: the saga-log panels; sagascope sagas list)",
            "who finished them, and how their traces connect (Jaeger: span links)",
        ),
    ),
    Scenario(
        "slow-database",
        "Orders still succeed, but checkout feels sluggish.",
        faults={"db_latency": 1.0},
        look_at=(
            "the latency objective's error budget (SLOs)",
            "where inside one slow saga the time goes (Jaeger: the spans under each saga step)",
        ),
    ),
)

BY_NAME: dict[str, Scenario] = {s.name: s for s in SCENARIOS}
