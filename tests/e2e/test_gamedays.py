"""e2e: every game-day scenario's answer key holds against the real backends.

For each scenario (sagascope/cli/gameday_scenarios.py) with its answer key
(observability/gamedays/<scenario>.yaml): the fault starts under steady traffic; each alert of
the key goes pending, then firing, in Prometheus; the trace of one affected order has the
expected span shape in Jaeger (polled until a deadline, so a partly exported trace does not
fail the check); its log events are in Elasticsearch; where the key has an operator's path
(``stuck-compensation``), its ``sagascope sagas`` commands run against the game day's order
service, as the demo user ``operator``, on the game day's own parked sagas — before and after the
fault is lifted — and each reaches the status the key says; after the fault is lifted every alert
of the key resolves. These are the project's trace-based tests.

Prometheus runs the time-compressed copy of the rules (sagascope/cli/gameday_rules.py: every
duration / 20, so `for: 1m` is 3 s and a 5 m window 15 s), loaded into the running Prometheus
through its rendered config and restored afterwards.

This module runs its own services (two order replicas; it kills and restarts them) on the
default ports the backends scrape: tools/run_e2e.py stops the e2e services before running it.
Backends: SAGASCOPE_JAEGER_URL, SAGASCOPE_ES_URL, SAGASCOPE_PROMETHEUS_URL (defaults: the local
topology); the rendered Prometheus config: E2E_PROMETHEUS_CONFIG (default var/stack/...).
Without a backend it skips, saying why; with SAGASCOPE_E2E_REQUIRED=1 it fails.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from sagascope.cli import gameday_rules
from sagascope.cli.gameday import (
    AnswerKey,
    GameDay,
    OperatorStep,
    Placed,
    Traffic,
    active_alerts,
    alert_state,
    log_events,
    render_tree_summary,
    trace_spans,
)
from sagascope.cli.gameday_scenarios import BY_NAME, SCENARIOS
from sagascope.local.topology import ELASTICSEARCH, ORDER, PROMETHEUS
from sagascope.local.topology import JAEGER as JAEGER_TOPOLOGY

REPO = Path(__file__).resolve().parents[2]
JAEGER = os.environ.get("SAGASCOPE_JAEGER_URL", JAEGER_TOPOLOGY.query_http.url).rstrip("/")
ES = os.environ.get("SAGASCOPE_ES_URL", ELASTICSEARCH.http.url).rstrip("/")
PROM = os.environ.get("SAGASCOPE_PROMETHEUS_URL", PROMETHEUS.web.url).rstrip("/")
PROM_CONFIG = Path(os.environ.get("E2E_PROMETHEUS_CONFIG", REPO / "var" / "stack" / "prometheus" / "prometheus.yml"))
REQUIRED = os.environ.get("SAGASCOPE_E2E_REQUIRED", "") not in ("", "0", "false")

QUIET_DEADLINE_S = 120.0  # the key's alerts inactive before the fault starts
FIRE_DEADLINE_S = 120.0  # every alert of the key pending, then firing
TRACE_DEADLINE_S = 60.0  # the trace shape and the log events found
RESOLVE_DEADLINE_S = 180.0  # every alert of the key inactive after the fault is lifted
POLL_S = 1.0  # below Prometheus's 5 s evaluation interval, so a pending state is seen
OPERATOR_DEADLINE_S = 90.0  # each command of the operator's path reaches what the key says

# The admin CLI logs in as the demo user holding sagas.read and sagas.operate (the CLI's login
# options, given after the command's own words).
OPERATOR_LOGIN = ("--user", "operator", "--password", "operator-dev-password")
SAGA_ID = re.compile(r"\bsaga_[0-9a-f]{32}\b")


def unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"required for e2e: {reason}")
    pytest.skip(reason)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _reachable(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url, timeout=3)
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def gameday() -> Iterator[tuple[asyncio.AbstractEventLoop, GameDay]]:
    for name, url in (("Prometheus", f"{PROM}/-/ready"), ("Jaeger", f"{JAEGER}/api/services"), ("Elasticsearch", ES)):
        if not _reachable(url):
            unavailable(f"{name} not reachable at {url}")
    if not PROM_CONFIG.is_file():
        unavailable(f"the running Prometheus's rendered config is not at {PROM_CONFIG} (E2E_PROMETHEUS_CONFIG)")
    if _listening(ORDER.grpc.default):
        unavailable(f"an order service already listens on {ORDER.grpc.default}: the game days run their own services")
    gameday_rules.install(PROM_CONFIG, PROM)
    loop = asyncio.new_event_loop()
    day = GameDay(REPO / "var" / "e2e-gameday")
    try:
        loop.run_until_complete(day.start())
        yield loop, day
    finally:
        loop.run_until_complete(day.stop())
        loop.close()
        gameday_rules.restore(PROM_CONFIG, PROM)


async def _wait_alerts(key: AnswerKey, want: str, deadline_s: float) -> dict[str, list[str]]:
    """Poll until every alert of the key has fired ("firing": seen pending, then firing — an
    alert over a short window may resolve and fire again meanwhile) or is inactive ("inactive",
    all at once); returns each alert's observed state sequence (deduplicated)."""
    seen: dict[str, list[str]] = {_name(m): [] for m in key.alerts}
    deadline = time.monotonic() + deadline_s

    def done(states: list[str]) -> bool:
        if want == "firing":
            return "pending" in states and "firing" in states[states.index("pending"):]
        return bool(states) and states[-1] == want

    while True:
        alerts = await asyncio.to_thread(active_alerts, PROM)
        for matcher in key.alerts:
            state = alert_state(alerts, matcher)
            states = seen[_name(matcher)]
            if not states or states[-1] != state:
                states.append(state)
        if all(done(states) for states in seen.values()):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{key.scenario}: alerts not all {want} within {deadline_s:.0f}s: {seen}")
        await asyncio.sleep(POLL_S)


def _name(matcher: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(matcher.items()))


async def _find_trace(key: AnswerKey, traffic: Traffic) -> tuple[Placed, list[str]]:
    """The first affected order whose trace has the key's shape and whose logs have its events."""
    deadline = time.monotonic() + TRACE_DEADLINE_S
    last = "no candidate order yet"
    while True:
        for placed in key.candidates(traffic.placed)[:6]:
            spans = await asyncio.to_thread(trace_spans, JAEGER, placed.correlation_id)
            missing = key.missing_spans(spans)
            if missing:
                last = f"{placed.correlation_id}: missing {missing}; has {render_tree_summary(spans)}"
                continue
            events = await asyncio.to_thread(log_events, ES, placed.correlation_id)
            missing_events = key.missing_events(events)
            if not missing_events:
                return placed, events
            last = f"{placed.correlation_id}: trace ok, log events missing {missing_events}; has {events}"
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{key.scenario}: no order with the expected trace and logs within {TRACE_DEADLINE_S:.0f}s "
                f"(orders: {traffic.counts()}); last: {last}"
            )
        await asyncio.sleep(2)


async def _sagascope(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a ``sagascope ...`` command of the answer key as the operator, against the game day's
    order service (the default local ports)."""
    assert argv[0] == "sagascope", argv
    # The login options belong to `sagascope sagas`, before its subcommand.
    assert argv[1] == "sagas", argv
    command = [sys.executable, "-m", "sagascope.cli.main", "sagas", *OPERATOR_LOGIN, *argv[2:]]
    proc = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60, cwd=REPO)
    if proc.returncode == 2 and "invalid choice: 'sagas'" in proc.stderr:
        pytest.fail("the admin CLI (`sagascope sagas`, issue 20) is not in this tree: the operator's path cannot run")
    return proc


async def _until(argv: Sequence[str], words: Sequence[str], deadline_s: float = OPERATOR_DEADLINE_S) -> str:
    """Re-run a read-only command until it succeeds and its output holds every word."""
    deadline = time.monotonic() + deadline_s
    while True:
        proc = await _sagascope(argv)
        if proc.returncode == 0 and all(word in proc.stdout for word in words):
            return proc.stdout
        if time.monotonic() > deadline:
            raise AssertionError(
                f"`{' '.join(argv)}` did not show {list(words)} within {deadline_s:.0f}s "
                f"(exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )
        await asyncio.sleep(2)


async def _act(step: OperatorStep, sagas: Mapping[str, str]) -> None:
    """One change of the operator's path, then `show` until the saga has the status the key says.
    A change refused while recovery holds the saga for a moment (a retry in flight) is tried again."""
    argv = step.argv(sagas)
    deadline = time.monotonic() + 15
    while (proc := await _sagascope(argv)).returncode != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"`{' '.join(argv)}` failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        await asyncio.sleep(1)
    await _until(["sagascope", "sagas", "show", sagas[step.saga]], [step.then, *step.shows])


async def _parked_sagas(key: AnswerKey, placed: Placed, traffic: Traffic) -> dict[str, str]:
    """A saga id for each placeholder of the key's path: the followed order's saga first, then other
    affected orders of this game day (a reply without an order: the saga found by correlation id)."""
    names = list(dict.fromkeys(step.saga for step in key.operator if step.saga))
    sagas: dict[str, str] = {}
    for candidate in [placed, *(p for p in key.candidates(traffic.placed) if p is not placed)]:
        if len(sagas) == len(names):
            break
        order = candidate.result.order
        saga_id = order.saga_id if order is not None and order.saga_id else ""
        if not saga_id:
            found = SAGA_ID.search(await _until(["sagascope", "sagas", "show", candidate.correlation_id], []))
            saga_id = found.group(0) if found else ""
        if saga_id and saga_id not in sagas.values():
            sagas[names[len(sagas)]] = saga_id
    assert len(sagas) == len(names), f"{key.scenario}: parked sagas for {names}, found {sagas}"
    return sagas


async def _operate(key: AnswerKey, sagas: Mapping[str, str], after_lift: bool) -> None:
    for step in key.operator:
        if step.after_lift != after_lift:
            continue
        if step.then:
            await _act(step, sagas)
        else:
            await _until(step.argv(sagas), step.shows)


async def _play(day: GameDay, name: str) -> None:
    scenario, key = BY_NAME[name], AnswerKey.load(name)
    await _wait_alerts(key, "inactive", QUIET_DEADLINE_S)
    started = time.monotonic()
    traffic = await day.begin(scenario)
    try:
        fired = await _wait_alerts(key, "firing", FIRE_DEADLINE_S)
        for alert, states in fired.items():
            assert states[0] == "inactive", f"{name}: {alert} was already active when the fault started: {states}"
        placed, events = await _find_trace(key, traffic)
        sagas = await _parked_sagas(key, placed, traffic) if key.operator else {}
        await _operate(key, sagas, after_lift=False)
        fault_s = time.monotonic() - started
        await day.lift(scenario)
        await _operate(key, sagas, after_lift=True)
        await _wait_alerts(key, "inactive", RESOLVE_DEADLINE_S)
        print(
            f"\n[gameday] {name}: alerts {list(fired)} pending->firing, trace+logs of {placed.correlation_id} "
            f"({len(events)} log records) within {fault_s:.0f}s of the fault; operator's path "
            f"({len(key.operator)} commands) on {sorted(sagas.values())}; resolved "
            f"{time.monotonic() - started - fault_s:.0f}s after lifting; orders {traffic.counts()}"
        )
    finally:
        await day.lift(scenario)
        await traffic.stop()


def test_every_scenario_has_an_answer_key() -> None:
    keys = {p.stem for p in (REPO / "observability" / "gamedays").glob("*.yaml")}
    assert keys == {s.name for s in SCENARIOS}


def test_stuck_compensation_key_walks_the_operators_path() -> None:
    """list -> show -> pause -> resolve, and pause -> resume once the fault is lifted: every
    command is the admin CLI's, and each change names the status it must reach."""
    steps = AnswerKey.load("stuck-compensation").operator
    verbs = [step.argv({"saga": "s", "other": "o"})[:3] for step in steps]
    assert all(v[:2] == ["sagascope", "sagas"] for v in verbs), verbs
    assert [v[2] for v in verbs] == ["list", "show", "pause", "resolve", "pause", "resume"]
    assert [s.then for s in steps if s.then] == ["PAUSED", "COMPENSATED", "PAUSED", "COMPENSATED"]
    assert [s.after_lift for s in steps] == [False] * 5 + [True]
    assert "--note" in steps[3].argv({"saga": "s"}) and all("--yes" in s.run for s in steps if s.then)


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_gameday_answer_key(gameday: tuple[asyncio.AbstractEventLoop, GameDay], name: str) -> None:
    loop, day = gameday
    loop.run_until_complete(_play(day, name))
