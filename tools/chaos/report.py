"""The campaign's markdown report (and the raw figures as JSON beside it)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tools.chaos.auditor import Facts, Violation, manual_resolutions, summarize
from tools.chaos.environment import ServiceTuning
from tools.chaos.goodput import FAULT_FREE_BAR, MIN_FAULT_FREE, NO_ORDER_BAR, Goodput
from tools.chaos.injector import InjectedFault
from tools.chaos.schedule import all_kinds
from tools.chaos.workload import ClientReply, SagaPlan

VIOLATIONS_LISTED = 200


@dataclass
class CampaignResult:
    seed: int
    sagas: int
    concurrency: int
    client_timeout_s: float
    tuning: ServiceTuning
    command: str
    started_at: str
    host: str
    commit: str
    plans: list[SagaPlan]
    faults: list[InjectedFault]
    replies: list[ClientReply]
    facts: Facts
    violations: list[Violation]
    workload_end_s: float
    faults_end_s: float
    converged_s: float | None  # seconds after the faults and the workload stopped; None: not in time
    converged_at_s: float | None  # since the campaign started
    converge_bound_s: float
    total_s: float
    limit_minor: int
    goodput: Goodput
    restarted_at_end: list[str] = field(default_factory=list)
    error_causes: Counter[str] = field(default_factory=Counter)  # the services' ERROR log lines by cause
    timelines: dict[str, list[str]] = field(default_factory=dict)  # violating orders' saga events
    mongo: str = "nx-27017"  # payment's MongoDB-wire server

    @property
    def missing_kinds(self) -> list[str]:
        """Kinds with no *confirmed* fault: an injection that cannot be confirmed does not count."""
        confirmed = {f.kind for f in self.faults if f.confirmed and not f.error}
        return [kind for kind in all_kinds() if kind not in confirmed]

    @property
    def fault_errors(self) -> list[InjectedFault]:
        return [f for f in self.faults if f.error]

    @property
    def unconfirmed(self) -> list[InjectedFault]:
        return [f for f in self.faults if not f.error and not f.confirmed]

    @property
    def passed(self) -> bool:
        return (not self.violations and self.converged_s is not None and not self.fault_errors
                and not self.missing_kinds and not self.goodput.failures)


def _mongo(r: CampaignResult) -> str:
    if r.mongo == "ferretdb":
        return "FerretDB (`mongo`, on a second throwaway PostgreSQL cluster of its own)"
    return "nx-27017 (`mongo`)"


def _reply_label(reply: ClientReply) -> str:
    return f"OK {reply.status}" if reply.code == "OK" else reply.code


def _final_replies(replies: list[ClientReply]) -> dict[tuple[str, int], ClientReply]:
    """Each client's last reply, per (key, copy)."""
    final: dict[tuple[str, int], ClientReply] = {}
    for reply in sorted(replies, key=lambda r: r.attempt):
        final[(reply.key, reply.copy)] = reply
    return final


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _counts(counter: Counter[str]) -> list[tuple[Any, ...]]:
    return [(name, count) for name, count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]


def _goodput(g: Goodput) -> list[str]:
    out = [
        "## Goodput",
        "",
        "Clean orders (no `x-sagascope-fault`, within the payment limit: COMPLETED is their only right end) "
        "that ended COMPLETED, by when their clients were at it (first send to last reply). *During* a kind: "
        "a fault of that kind was active meanwhile (an order may fall under two kinds when the lanes "
        f"overlapped). *Fault-free*: no fault active and at least {g.settle_s:g} s (one breaker reset plus "
        "one saga lease, as the services were started) since the last heal. *Recovering*: the rest.",
        "",
    ]
    rows = [(s.window, s.orders, s.completed, s.percent) for s in g.by_kind]
    rows += [(s.window, s.orders, s.completed, s.percent) for s in (g.recovering, g.fault_free)]
    out += _table(("window", "clean orders", "COMPLETED", "goodput"), rows)
    out += ["", f"Keys that made no order at all (every client got an error before the order was reserved): "
                f"{g.keys_without_order} of {g.keys} ({100 * g.no_order_ratio:.1f} %).", "",
            f"Bars: fault-free goodput at least {100 * FAULT_FREE_BAR:.0f} % over at least {MIN_FAULT_FREE} "
            f"clean orders; keys without an order at most {100 * NO_ORDER_BAR:.0f} %. "
            + ("; ".join(g.failures) + "." if g.failures else "Both met.")]
    if g.not_completed_fault_free:
        out.append(f"Fault-free clean keys that did not complete: {', '.join(g.not_completed_fault_free[:20])}.")
    return out


def render(result: CampaignResult) -> str:
    r = result
    verdict = "PASS" if r.passed else "FAIL"
    final = _final_replies(r.replies)
    status = summarize(r.facts)
    out = [
        "# Chaos campaign",
        "",
        f"**{verdict}**: {r.sagas} sagas, {len(r.faults)} scheduled faults of {len(all_kinds())} kinds, "
        f"{len(r.replies)} client replies; **{len(r.violations)} violation(s)**; "
        + (f"converged {r.converged_at_s - r.faults_end_s:.1f} s after the last fault"
           if r.converged_at_s is not None else f"NOT converged within {r.converge_bound_s:.0f} s")
        + f"; fault-free goodput **{r.goodput.fault_free.percent}** of {r.goodput.fault_free.orders} clean orders"
        + f"; {len(r.faults) - len(r.unconfirmed) - len(r.fault_errors)} of {len(r.faults)} faults confirmed.",
        "",
        f"- seed {r.seed}, {r.sagas} sagas, {r.concurrency} in flight, client deadline {r.client_timeout_s:g} s",
        f"- started {r.started_at} on {r.host}, commit `{r.commit}`, {r.total_s:.0f} s in all "
        f"(workload {r.workload_end_s:.0f} s, faults until {r.faults_end_s:.0f} s)",
        f"- rerun: `{r.command}`",
        "",
        "Processes (each a real subprocess on an ephemeral loopback port, under one supervisor): a throwaway",
        f"PostgreSQL cluster, toxiproxy, {_mongo(r)}, identity, payment and two order replicas. Order reaches",
        f"payment and PostgreSQL, and payment reaches {r.mongo}, only through toxiproxy. The auditor reads",
        f"PostgreSQL and {r.mongo} directly.",
        "",
        "Settings shortened for the campaign (real service settings, by environment): "
        f"`ORDER_SAGA_LEASE_SECONDS={r.tuning.lease_s:g}` (default 30), "
        f"`ORDER_RECOVERY_INTERVAL_SECONDS={r.tuning.recovery_interval_s:g}` (5), "
        f"`ORDER_PAYMENT_TIMEOUT_SECONDS={r.tuning.payment_timeout_s:g}` (2), "
        f"`ORDER_BREAKER_RESET_SECONDS={r.tuning.breaker_reset_s:g}` (10), "
        f"`SAGASCOPE_FAULTS_ENABLED=true`, `SAGASCOPE_FAULT_LATENCY_MS={r.tuning.fault_latency_ms}`, "
        f"telemetry {'on (OTLP-JSON files)' if r.tuning.telemetry else 'off'}.",
        "",
        "## Faults injected",
        "",
    ]
    by_kind: dict[str, list[InjectedFault]] = defaultdict(list)
    for fault in r.faults:
        by_kind[fault.kind].append(fault)
    rows = []
    for kind in all_kinds():
        done = by_kind.get(kind, [])
        ok = [f for f in done if not f.error and f.confirmed]
        held = sum(f.held_s for f in ok) / len(ok) if ok else 0.0
        backs = [f.back_s for f in ok if f.back_s is not None]
        rows.append((kind, len(done), len(ok), sum(1 for f in done if not f.error and not f.confirmed),
                     sum(1 for f in done if f.error), f"{held:.1f}", f"{max(backs):.1f}" if backs else "-"))
    out += _table(("fault", "scheduled", "confirmed", "unconfirmed", "failed to inject", "mean held / down s",
                   "slowest restart s"), rows)
    out += ["", "A toxic is confirmed when toxiproxy's API lists it on its proxy with the type, stream and "
                "attributes asked for, and no longer lists it after its removal; a kill (or PostgreSQL restart) "
                "when the old pid and its whole process group are gone and a new pid owns every port the process "
                "listens on and passes its health check. Only confirmed faults count as injected."]
    noted = [f for f in r.faults if f.note]
    if noted:
        out += ["", "Faults that needed more than their removal:", ""]
        out += [f"- {f.kind} at saga {f.at_saga}: {f.note}" for f in noted]
    if r.unconfirmed:
        out += ["", "Unconfirmed (not counted):", ""]
        out += [f"- {f.kind} at saga {f.at_saga}: {f.unconfirmed}" for f in r.unconfirmed]
    duplicated = [p for p in r.plans if p.copies > 1]
    asked: Counter[str] = Counter(fault for p in r.plans for fault in p.faults)
    retries = sum(1 for reply in r.replies if reply.attempt > 1)
    out += [
        "",
        f"Network faults: {sum(1 for f in r.faults if f.lane == 'network')}; process faults: "
        f"{sum(1 for f in r.faults if f.lane == 'process')} (SIGKILL of a process group, then a restart after the "
        "'down' time; PostgreSQL: fast shutdown, then start).",
        "",
        f"Concurrent duplicates: {len(duplicated)} keys sent by several clients at once "
        f"({sum(p.copies for p in duplicated)} requests: "
        + ", ".join(f"{n} keys x{c}" for c, n in sorted(Counter(p.copies for p in duplicated).items()))
        + f"). Client retries of the same key after an inconclusive error: {retries}.",
        "",
        "Application fault flags asked for (`x-sagascope-fault`): "
        + (", ".join(f"{name} {count}" for name, count in sorted(asked.items())) or "none")
        + f"; orders above the payment limit: {sum(1 for p in r.plans if p.total_minor > r.limit_minor)}.",
        "",
        "## Outcomes",
        "",
    ]
    out += _table(("orders by final status", "count"), _counts(status["orders"]))
    out += ["", *_table(("sagas by final status", "count"), _counts(status["sagas"]))]
    out += ["", *_table(("payments by status", "count"), _counts(status["payments"]))]
    resolved = manual_resolutions(r.facts)
    if resolved:
        out += ["", "Resolved by hand (ResolveSaga; not violations: a person settled them outside the system):", ""]
        out += _table(("saga", "order", "by", "note", "left charged (minor units)"),
                      [(m.saga_id, m.order_id, m.resolved_by, m.note[:80], m.charged_minor) for m in resolved])
    final_labels = Counter(_reply_label(x) for x in final.values())
    every_label = Counter(_reply_label(x) for x in r.replies)
    out += ["", *_table(("each client's final reply", "count"), _counts(final_labels))]
    out += ["", *_table(("every reply (retries included)", "count"), _counts(every_label))]
    out += ["", *_goodput(r.goodput), "", "## Convergence", ""]
    if r.converged_s is not None:
        assert r.converged_at_s is not None
        out.append(f"The last fault was healed (its process healthy again) at {r.faults_end_s:.1f} s and the workload "
                   f"ended at {r.workload_end_s:.1f} s; every saga and order was terminal, with the payments no "
                   f"longer changing, at {r.converged_at_s:.1f} s: **{r.converged_at_s - r.faults_end_s:.1f} s after "
                   f"the last fault**, {r.converged_s:.1f} s after both had stopped (bound {r.converge_bound_s:.0f} s: "
                   "a parked compensation retries after at most 60 s, plus a few leases). The workload's last 15 % "
                   "ran without faults, so recovery overlapped it.")
    else:
        out.append(f"Not every saga was terminal within {r.converge_bound_s:.0f} s; see the violations.")
    if r.restarted_at_end:
        out.append(f"Processes found down after the schedule and started again: {', '.join(r.restarted_at_end)}.")
    out += ["", "## Violations", ""]
    if not r.violations:
        out.append("None.")
    else:
        out += ["Root causes found so far, and the fixes proposed: `benchmarks/chaos/FINDINGS.md`.", ""]
        out += _table(("check", "count"), _counts(Counter(v.check for v in r.violations)))
        out.append("")
        out += _table(("check", "ids", "detail"),
                      [(v.check, f"`{v.subject}`", " ".join(v.detail.replace("|", "/").split()))
                       for v in r.violations[:VIOLATIONS_LISTED]])
        if len(r.violations) > VIOLATIONS_LISTED:
            out.append(f"\n…and {len(r.violations) - VIOLATIONS_LISTED} more in the JSON file.")
    if r.timelines:
        out += ["", "Saga events of the violating orders (first few), from the services' logs:", ""]
        for order_id, lines in r.timelines.items():
            out += [f"- `{order_id}`", "", "  ```", *(f"  {line}" for line in lines), "  ```", ""]
    if r.fault_errors or r.missing_kinds:
        out += ["", "Faults that could not be injected (a failure of the campaign):", ""]
        out += [f"- {f.kind} at saga {f.at_saga}: {f.error}" for f in r.fault_errors]
        out += [f"- {kind}: never injected" for kind in r.missing_kinds]
    out += ["", "## Observations (not violations)", ""]
    odd = Counter(x.code for x in r.replies if x.code in ("INTERNAL", "UNKNOWN"))
    if odd:
        out.append(f"- Replies with INTERNAL/UNKNOWN: {dict(odd)} (the causes are in the ERROR lines below).")
    if r.error_causes:
        out += ["- ERROR lines in the services' logs, by process, message and exception:", ""]
        out += ["  " + line for line in _table(("count", "cause"), [
            (count, cause.replace("|", "/")) for cause, count in r.error_causes.most_common(12)])]
        out.append("")
    answers: dict[str, set[str]] = defaultdict(set)
    for (key, _copy), reply in final.items():
        answers[key].add(_reply_label(reply))
    split = sorted(key for key, labels in answers.items() if len(labels) > 1)
    out.append(f"- Duplicate keys whose clients ended with different answers (each still agrees with the final "
               f"state): {len(split)}" + (f", e.g. {', '.join(split[:5])}" if split else ""))
    out += ["", "## Checks and reply rules", "",
            "Net charge of an order = the sum over its payments in status CHARGED (REFUNDED ones were given back;",
            "DECLINED and VOIDED never took money). The auditor fails the run on any of:", "",
            "- a saga not COMPLETED/COMPENSATED, or an order not COMPLETED/CANCELLED;",
            "- an order without its saga (or the reverse), or the two disagreeing (COMPLETED/COMPLETED, "
            "CANCELLED/COMPENSATED);",
            "- a COMPLETED order without exactly one CHARGED payment of its total and currency, or naming another "
            "payment;",
            "- a CANCELLED order with a CHARGED payment;",
            "- a payment whose order does not exist or whose key is not that order's saga's charge key; a VOIDED "
            "fence whose key names no saga;",
            "- an order above the payment limit COMPLETED, or a charge above the limit;",
            "- a reply that disagrees with the final state: OK COMPLETED must end COMPLETED, OK CANCELLED and "
            "OK FAILED must end CANCELLED (FAILED is a compensation still pending), OK PENDING may end either, and "
            "an OK must name the key's order; an UNAVAILABLE that says the order \"was cancelled\" or \"is FAILED "
            "until its refund\" must name the key's order and end CANCELLED; INVALID_ARGUMENT, ALREADY_EXISTS, "
            "PERMISSION_DENIED, NOT_FOUND or FAILED_PRECONDITION for these valid, identical requests is a "
            "violation; any other error (connection cut, deadline, internal) allows any final state or no order.",
            "",
            "It also fails when a scheduled fault could not be injected, a fault kind was never confirmed, the "
            "sagas did not converge within the bound, or goodput missed its bars (above).", ""]
    return "\n".join(out)


def write(result: CampaignResult, report: Path, raw: Path) -> None:
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render(result))
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps({
        "seed": result.seed, "sagas": result.sagas, "passed": result.passed,
        "converged_s": result.converged_s,
        "goodput": asdict(result.goodput),
        "faults": [asdict(f) for f in result.faults],
        "violations": [asdict(v) for v in result.violations],
        "replies": [asdict(x) for x in result.replies],
        "facts": summarize(result.facts),
        "orders": [asdict(o) for o in result.facts.orders],
    }, indent=1, default=str))
