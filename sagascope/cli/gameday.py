"""``sagascope gameday <scenario>``: break the local stack on purpose, and check the answer key.

A game day runs the three services (two order replicas sharing one saga log) against the real
backends, with time-compressed alert rules loaded into Prometheus
(:mod:`sagascope.cli.gameday_rules`), then starts one scenario
(:mod:`sagascope.cli.gameday_scenarios`) under steady traffic and prints where to look —
not what is wrong. The answer key, ``observability/gamedays/<scenario>.yaml``, lists the alerts
that must fire, the trace shape that shows the cause, the log events and, where an operator has
to act, the path with the admin CLI (``sagascope sagas ...``); :class:`AnswerKey` checks it
against Prometheus, Jaeger and Elasticsearch (tests/e2e/test_gamedays.py does, for every
scenario, and runs the operator's path).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import string
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from sagascope.cli.client import OrderClient, OrderResult, login, order_request
from sagascope.cli.gameday_scenarios import Action, Scenario
from sagascope.cli.logs_view import logs_from_elasticsearch
from sagascope.cli.trace_view import SpanRow, spans_from_jaeger
from sagascope.local.backends import REPO_ROOT
from sagascope.local.services import LocalStack, Ports
from sagascope.local.supervisor import Supervisor, signalled
from sagascope.local.topology import address, service_telemetry_environment

ANSWERS_DIR = REPO_ROOT / "observability" / "gamedays"
USER, PASSWORD = "alice", "alice-dev-password"  # the development identity's demo user

# The services' settings for a game day: faults on (switched through the fault file), payment
# latency beyond the order service's 2 s payment deadline, a short saga lease so a killed
# replica's sagas are taken over within seconds.
GAMEDAY_ENV = {
    "SAGASCOPE_FAULTS_ENABLED": "true",
    "SAGASCOPE_FAULT_LATENCY_MS": "2500",
    "SAGASCOPE_FAULT_DB_LATENCY_MS": "300",
    "ORDER_SAGA_LEASE_SECONDS": "15",
    "OTEL_BSP_SCHEDULE_DELAY": "500",
    "OTEL_BLRP_SCHEDULE_DELAY": "500",
}


# --- traffic ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    correlation_id: str
    result: OrderResult
    started: float
    target: str


class Traffic:
    """Orders on loopback at a steady rate (open loop: a slow saga does not slow the arrivals, as
    with real customers), each with a known correlation id, until stopped — bounded by
    ``max_in_flight`` concurrent calls and ``limit`` orders, whatever happens."""

    def __init__(self, target: str, token: str, label: str, rate_per_s: float = 2.0, max_in_flight: int = 40,
                 limit: int = 3000) -> None:
        self.target = target
        self.token = token
        self.label = label
        self.rate_per_s = rate_per_s
        self.limit = limit
        self.placed: list[Placed] = []
        self._slots = asyncio.Semaphore(max_in_flight)
        self._clients: dict[str, OrderClient] = {}
        self._calls: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def _client(self) -> OrderClient:
        if self.target not in self._clients:
            self._clients[self.target] = OrderClient(self.target, self.token)
        return self._clients[self.target]

    async def _order(self, n: int) -> None:
        try:
            cid = f"gameday-{self.label}-{uuid.uuid4().hex[:16]}"
            target, started = self.target, time.time()
            result = await self._client().create_order(
                order_request(USER, f"{cid}-key", amount_minor=2_000 + n % 1000), timeout=20.0, correlation_id=cid
            )
            self.placed.append(Placed(cid, result, started, target))
        finally:
            self._slots.release()

    async def _arrivals(self) -> None:
        for n in range(self.limit):
            await self._slots.acquire()
            call = asyncio.create_task(self._order(n), name=f"gameday-order-{n}")
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)
            await asyncio.sleep(1.0 / self.rate_per_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._arrivals(), name="gameday-traffic")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._calls, return_exceptions=True)
        for client in self._clients.values():
            await client.close()

    def counts(self) -> dict[str, int]:
        return dict(Counter(p.result.status_name for p in self.placed))


# --- the stack and the scenario ------------------------------------------------------------------


class GameDay:
    """The services under one supervisor (beside the backends, if it runs them too)."""

    def __init__(self, state_dir: Path, supervisor: Supervisor | None = None, ports: Ports | None = None) -> None:
        self.state_dir = state_dir.resolve()
        self.fault_file = self.state_dir / "faults"
        env = {**service_telemetry_environment(), **GAMEDAY_ENV, "SAGASCOPE_FAULTS_FILE": str(self.fault_file)}
        self.stack = LocalStack(
            self.state_dir, ports or Ports(), extra_env=env, order_replicas=2, supervisor=supervisor, cwd=REPO_ROOT
        )
        self.token = ""

    @property
    def primary(self) -> str:
        return address(self.stack.ports.order_grpc)

    @property
    def replica(self) -> str:
        return address(self.stack.order_ports[1])

    async def start(self) -> None:
        self.clear_faults()
        await self.stack.start()
        self.token = await login(self.stack.identity_target, USER, PASSWORD)

    async def stop(self) -> None:
        self.clear_faults()
        await self.stack.stop()

    def write_faults(self, faults: Mapping[str, float]) -> None:
        self.fault_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.fault_file.with_suffix(".tmp")
        tmp.write_text("".join(f"{name}={rate}\n" for name, rate in faults.items()))
        tmp.replace(self.fault_file)  # atomic: a service never reads half a file

    def clear_faults(self) -> None:
        self.fault_file.unlink(missing_ok=True)

    async def begin(self, scenario: Scenario) -> Traffic:
        """Switch the fault on and start traffic; returns the traffic (stop it when done)."""
        if scenario.faults:
            self.write_faults(scenario.faults)
            await asyncio.sleep(1.5)  # the services re-read the fault file at most once a second
        traffic = Traffic(self.replica if scenario.traffic_to_replica else self.primary, self.token, scenario.name)
        traffic.start()
        if scenario.action is Action.KILL_PAYMENT:
            self.stack.kill("payment")
        elif scenario.action is Action.KILL_ORDER_REPLICA:
            await asyncio.sleep(1.0)  # sagas are now inside their (slowed) confirm step
            self.stack.kill("order-2")
            traffic.target = self.primary
        if scenario.faults_only_before_action:
            self.clear_faults()
        return traffic

    async def lift(self, scenario: Scenario) -> None:
        self.clear_faults()
        if scenario.action is Action.KILL_PAYMENT:
            await self.stack.start_one("payment")
        elif scenario.action is Action.KILL_ORDER_REPLICA:
            await self.stack.start_one("order-2")


# --- the answer key ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpanShape:
    name: str
    service: str = ""
    status: str = ""  # "error" / "ok" / "" (any)
    attributes: Mapping[str, str] = field(default_factory=dict)
    parent: str = ""  # name of the parent span
    links_to: str = ""  # name of a span this one links to
    min_duration_ms: float = 0.0

    def matches(self, span: SpanRow, by_id: Mapping[str, SpanRow]) -> bool:
        if span.name != self.name or (self.service and span.service != self.service):
            return False
        if self.status and span.status != self.status:
            return False
        if any(str(span.attributes.get(k)).lower() != str(v).lower() for k, v in self.attributes.items()):
            return False
        if self.parent and (span.parent_id is None or getattr(by_id.get(span.parent_id), "name", "") != self.parent):
            return False
        if self.links_to and not any(getattr(by_id.get(s), "name", "") == self.links_to for _, s in span.links):
            return False
        return span.duration_ms >= self.min_duration_ms


@dataclass(frozen=True)
class OperatorStep:
    """One command of the operator's path: ``sagascope sagas ...`` with a ``{name}`` placeholder
    for the saga it acts on."""

    run: str
    shows: tuple[str, ...] = ()  # words the output must contain (of `show`, after an action with `then`)
    then: str = ""  # the status `sagascope sagas show {saga}` must reach after this command
    after_lift: bool = False  # run once the fault is lifted

    def argv(self, sagas: Mapping[str, str]) -> list[str]:
        """The command's words with the placeholders filled in (``sagascope`` stays the first word)."""
        return [word.format_map(sagas) for word in shlex.split(self.run)]

    @property
    def saga(self) -> str:
        """The placeholder naming the saga the command acts on ("" for a command on no one saga)."""
        names = [name for word in shlex.split(self.run) for _, name, _, _ in string.Formatter().parse(word) if name]
        return names[0] if names else ""


@dataclass(frozen=True)
class AnswerKey:
    scenario: str
    alerts: tuple[Mapping[str, str], ...]
    sample: Mapping[str, str]  # which placed order to follow: {status: ...}, {not_status: ...}, {code: ...}
    spans: tuple[SpanShape, ...]
    log_events: tuple[str, ...]
    operator: tuple[OperatorStep, ...] = ()  # the operator's path with the admin CLI, where there is one

    @classmethod
    def load(cls, scenario: str, directory: Path = ANSWERS_DIR) -> AnswerKey:
        import yaml  # type: ignore[import-untyped,unused-ignore]  # dev extra, as for the local stack

        doc = yaml.safe_load((directory / f"{scenario}.yaml").read_text())
        return cls(
            scenario=doc["scenario"],
            alerts=tuple(doc["alerts"]),
            sample=doc["trace"]["sample"],
            spans=tuple(SpanShape(**s) for s in doc["trace"]["spans"]),
            log_events=tuple(doc["logs"]["events"]),
            operator=tuple(
                OperatorStep(**{**step, "shows": tuple(step.get("shows", ()))}) for step in doc.get("operator", ())
            ),
        )

    def candidates(self, placed: Sequence[Placed]) -> list[Placed]:
        """The placed orders the trace check may follow, in the order they were placed."""
        out = []
        for p in sorted(placed, key=lambda p: p.started):
            if "status" in self.sample and p.result.status_name != self.sample["status"]:
                continue
            if "code" in self.sample and p.result.code != grpc.StatusCode[self.sample["code"]]:
                continue
            if "not_status" in self.sample and p.result.status_name == self.sample["not_status"]:
                continue
            out.append(p)
        return out

    def missing_spans(self, spans: Sequence[SpanRow]) -> list[SpanShape]:
        by_id = {s.span_id: s for s in spans}
        return [shape for shape in self.spans if not any(shape.matches(s, by_id) for s in spans)]

    def missing_events(self, events: Sequence[str]) -> list[str]:
        seen = set(events)
        return [e for e in self.log_events if e not in seen]


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def active_alerts(prometheus_url: str) -> list[dict[str, Any]]:
    """Prometheus's pending and firing alerts: ``[{labels, state, ...}]``."""
    return list(_get_json(f"{prometheus_url.rstrip('/')}/api/v1/alerts")["data"]["alerts"])


def alert_state(alerts: Sequence[Mapping[str, Any]], matcher: Mapping[str, str]) -> str:
    """"firing", "pending" or "inactive" for the alerts whose labels include ``matcher``."""
    states = {a["state"] for a in alerts if all(a["labels"].get(k) == v for k, v in matcher.items())}
    return "firing" if "firing" in states else "pending" if "pending" in states else "inactive"


def trace_spans(jaeger_url: str, correlation_id: str) -> list[SpanRow]:
    return spans_from_jaeger(jaeger_url, correlation_id, lookback="1h")


def log_events(es_url: str, correlation_id: str) -> list[str]:
    return [row.event for row in logs_from_elasticsearch(es_url, correlation_id)]


def render_tree_summary(spans: Sequence[SpanRow]) -> str:
    return ", ".join(sorted({f"{s.service}:{s.name}[{s.status}]" for s in spans}))


# --- the command ---------------------------------------------------------------------------------


def _say(message: str) -> None:
    print(message, flush=True)


def briefing(scenario: Scenario, prometheus_url: str, jaeger_url: str) -> str:
    from sagascope.cli.gameday_scenarios import START_HERE

    lines = [
        f"game day: {scenario.name}",
        f"  the report: {scenario.report}",
        "  where to start:",
        *(f"    - {hint.format(prometheus=prometheus_url)}" for hint in START_HERE),
        *(f"    - {hint}" for hint in scenario.look_at),
        f"  Jaeger: {jaeger_url}/search    Prometheus alerts: {prometheus_url}/alerts",
        "  follow one order: sagascope trace <correlation id> | sagascope logs <correlation id>",
        "  (the game day's orders carry correlation ids starting with "
        f"gameday-{scenario.name}-; Grafana and Kibana run under docker compose)",
    ]
    return "\n".join(lines)


async def run_command(scenario: Scenario, state_dir: Path, minutes: float, real_time: bool) -> int:
    """Backends + services + compressed rules, the fault for ``minutes``, then lifted; the stack
    stays up (Ctrl-C stops it) so the alerts can be watched resolving."""

    from sagascope.cli import gameday_rules
    from sagascope.local.backends import BackendsNotInstalled, BackendStack
    from sagascope.local.topology import JAEGER, PROMETHEUS

    supervisor = Supervisor(say=lambda m: _say(f"  {m}"))
    try:
        backends = BackendStack(state_dir / "stack", Ports(), supervisor=supervisor)
    except BackendsNotInstalled as exc:
        _say(str(exc))
        return 1
    day = GameDay(state_dir / "gameday", supervisor)
    stop = signalled()
    try:
        _say("starting the backends and the services (two order replicas) ...")
        await backends.start()
        await day.start()
        if not real_time:
            gameday_rules.install(state_dir / "stack" / "prometheus" / "prometheus.yml", PROMETHEUS.web.url)
            factor = gameday_rules.DEFAULT_FACTOR
            _say(f"alert rules loaded with every duration / {factor:g} (--real-time: as committed)")
        traffic = await day.begin(scenario)
        _say(briefing(scenario, PROMETHEUS.web.url, JAEGER.query_http.url))
        try:
            await asyncio.wait_for(stop.wait(), timeout=minutes * 60)
        except TimeoutError:
            pass
        await day.lift(scenario)
        _say(f"fault lifted after {len(traffic.placed)} orders {traffic.counts()}; watch the alerts resolve.")
        answer = ANSWERS_DIR.relative_to(REPO_ROOT) / f"{scenario.name}.yaml"
        _say(f"the answer key: {answer}. Ctrl-C stops everything.")
        await stop.wait()
        await traffic.stop()
    except (RuntimeError, TimeoutError) as exc:
        _say(f"failed: {exc}")
        return 1
    finally:
        await supervisor.stop()
    return 0
