"""``sagascope sagas ...``: a thin client of sagascope.admin.v1.SagaAdminService.

list / show read (role ``sagas.read``); retry / pause / resume / resolve change (``sagas.operate``),
each after a confirmation unless ``--yes``; ``--all-matching --rate N`` runs retry or resume as
paced batches (the server paces them, N sagas a second). It logs in like ``sagascope order``
(``--user operator``). ``show`` prints the saga log's timeline and the Jaeger and Kibana links
(JAEGER_URL / KIBANA_URL, default the local stack's).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from sagascope.api.admin.v1 import admin_pb2, admin_pb2_grpc
from sagascope.cli.client import login
from sagascope.common.tls import CLIENT_PREFIX, TlsSettings, open_channel
from sagascope.local.topology import JAEGER

# The local stack's Jaeger (`sagascope stack`); Kibana runs in compose only, published there on 5601.
DEFAULT_JAEGER_URL = JAEGER.query_http.url
DEFAULT_KIBANA_URL = "http://127.0.0.1:5601"
STATUSES = ("RUNNING", "COMPENSATING", "FAILED", "PAUSED", "COMPLETED", "COMPENSATED")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
Say = Callable[[str], None]


def parse_age(text: str) -> float:
    """``30s``, ``5m``, ``2h``, ``1d`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age like 30s, 5m, 2h or 1d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _status_name(value: int) -> str:
    return admin_pb2.SagaStatus.Name(value).removeprefix("SAGA_STATUS_") if value else "-"  # type: ignore[arg-type]


def _when(stamp: Timestamp, with_date: bool = True) -> str:
    if not stamp.seconds and not stamp.nanos:
        return "-"
    moment = stamp.ToDatetime(tzinfo=UTC)
    return moment.isoformat(timespec="milliseconds") if with_date else moment.strftime("%H:%M:%S.%f")[:-3]


def _age(stamp: Timestamp) -> str:
    if not stamp.seconds:
        return "-"
    seconds = max(0.0, datetime.now(UTC).timestamp() - stamp.ToNanoseconds() / 1e9)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def build_filter(args: argparse.Namespace) -> admin_pb2.SagaFilter:
    saga_filter = admin_pb2.SagaFilter(
        status=f"SAGA_STATUS_{args.status}" if args.status else None, saga_name=args.name or "", step=args.step or ""
    )
    if args.older_than:
        saga_filter.older_than.CopyFrom(Duration(seconds=int(args.older_than), nanos=0))
    return saga_filter


def links(saga: admin_pb2.Saga) -> list[str]:
    jaeger = os.environ.get("JAEGER_URL", DEFAULT_JAEGER_URL).rstrip("/")
    kibana = os.environ.get("KIBANA_URL", DEFAULT_KIBANA_URL).rstrip("/")
    out = []
    if saga.trace_id:
        out.append(f"trace   {jaeger}/trace/{saga.trace_id}")
    cid = saga.summary.correlation_id
    if cid:
        query = quote(f'correlation_id:"{cid}"', safe="")
        out.append(f"logs    {kibana}/app/discover#/?_a=(query:(language:kuery,query:'{query}'))")
    return out


def render_list(sagas: list[admin_pb2.SagaSummary]) -> str:
    header = f"{'saga':<38} {'status':<13} {'step':<9} {'age':>5} {'idle':>5} {'tries':>5}  order / reason"
    rows = [header]
    for s in sagas:
        reason = s.failure_reason[:60] if s.failure_reason else ""
        rows.append(
            f"{s.saga_id:<38} {_status_name(s.status):<13} {s.step or '-':<9} {_age(s.created_at):>5} "
            f"{_age(s.updated_at):>5} {s.attempts:>5}  {s.order_id}{'  ' + reason if reason else ''}"
        )
    return "\n".join(rows)


def render_saga(saga: admin_pb2.Saga) -> str:
    s = saga.summary
    lines = [
        f"saga {s.saga_id}  {s.saga_name}  {_status_name(s.status)}"
        + (f" (paused from {_status_name(s.paused_from)})" if s.paused_from else "")
        + (f"  resolution: {s.resolution}" if s.resolution else ""),
        f"  order {s.order_id or '-'}   correlation id {s.correlation_id}   trace {saga.trace_id or '-'}",
        f"  current step {s.step or '-'}   created {_when(s.created_at)}   last write {_when(s.updated_at)}",
        f"  lease {s.lease_owner or '-'} until {_when(s.lease_expires_at)}   next attempt {_when(s.next_attempt_at)}"
        f"   recovery attempts {s.attempts}",
    ]
    if s.failure_reason:
        lines.append(f"  failure ({s.failure_kind or '-'}): {s.failure_reason}")
    lines.append("timeline (from the saga log):")
    for run in saga.steps:
        kind = "compensate" if run.kind == admin_pb2.STEP_KIND_COMPENSATION else "step"
        took = ""
        if run.ended_at.seconds:
            took = f"{(run.ended_at.ToNanoseconds() - run.started_at.ToNanoseconds()) / 1e6:8.1f} ms"
        result = run.result or "in flight / unknown"
        lines.append(
            f"  {_when(run.started_at, with_date=False)}  {kind:<10} {run.step:<9} #{run.attempt} "
            f"{took:>11}  {result}{': ' + run.reason if run.reason else ''}"
        )
    if saga.audit:
        lines.append("operator actions:")
        for a in saga.audit:
            lines.append(
                f"  {_when(a.at)}  {a.action:<8} by {a.actor}  {_status_name(a.from_status)} -> "
                f"{_status_name(a.to_status)}{'  note: ' + a.note if a.note else ''}"
            )
    lines += ["links:", *(f"  {line}" for line in links(saga))]
    return "\n".join(lines)


def _confirm(question: str, assume_yes: bool, say: Say) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        say(f"{question} -- refusing without a terminal to ask; pass --yes")
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


async def run(args: argparse.Namespace, say: Say) -> int:
    password = args.password or os.environ.get("SAGASCOPE_PASSWORD") or f"{args.user}-dev-password"
    try:
        token = await login(args.identity, args.user, password)
    except grpc.aio.AioRpcError as exc:
        say(f"login as {args.user!r} failed: {exc.code().name}: {exc.details()}")
        return 1
    metadata = (("authorization", f"Bearer {token}"),)
    async with open_channel(args.target, TlsSettings.from_env(CLIENT_PREFIX)) as channel:
        stub = admin_pb2_grpc.SagaAdminServiceStub(channel)
        try:
            return await _dispatch(args, stub, metadata, say)
        except grpc.aio.AioRpcError as exc:
            say(f"{exc.code().name}: {exc.details()}")
            return 1


async def _dispatch(
    args: argparse.Namespace,
    stub: admin_pb2_grpc.SagaAdminServiceStub,
    metadata: tuple[tuple[str, str], ...],
    say: Say,
) -> int:
    action = args.sagas_command
    if action == "list":
        order = admin_pb2.SAGA_ORDER_STALEST if args.stalest else admin_pb2.SAGA_ORDER_NEWEST
        reply = await stub.ListSagas(
            admin_pb2.ListSagasRequest(
                filter=build_filter(args), order=order, page_size=args.limit, page_token=args.cursor or ""
            ),
            metadata=metadata,
            timeout=30,
        )
        say(render_list(list(reply.sagas)))
        if reply.next_page_token:
            say(f"more: --cursor {reply.next_page_token}")
        return 0
    if action == "show":
        reply = await stub.GetSaga(_get_request(args.id), metadata=metadata, timeout=30)
        say(render_saga(reply.saga))
        return 0
    if getattr(args, "all_matching", False):
        return await _batch(args, stub, metadata, say)
    if not args.id:
        say(f"sagas {action}: give a saga id, or --all-matching with a filter")
        return 2
    if not _confirm(f"{action} saga {args.id}?", args.yes, say):
        return 1
    note = args.note or ""
    requests = {
        "retry": lambda: stub.RetrySaga(admin_pb2.RetrySagaRequest(saga_id=args.id, note=note), metadata=metadata),
        "pause": lambda: stub.PauseSaga(admin_pb2.PauseSagaRequest(saga_id=args.id, note=note), metadata=metadata),
        "resume": lambda: stub.ResumeSaga(admin_pb2.ResumeSagaRequest(saga_id=args.id, note=note), metadata=metadata),
        "resolve": lambda: stub.ResolveSaga(
            admin_pb2.ResolveSagaRequest(saga_id=args.id, note=note), metadata=metadata
        ),
    }
    reply = await requests[action]()
    say(f"{action}: done. saga {args.id} is now {_status_name(reply.saga.summary.status)}")
    return 0


def _get_request(ref: str) -> admin_pb2.GetSagaRequest:
    if ref.startswith("saga_"):
        return admin_pb2.GetSagaRequest(saga_id=ref)
    if ref.startswith("ord_"):
        return admin_pb2.GetSagaRequest(order_id=ref)
    return admin_pb2.GetSagaRequest(correlation_id=ref)


async def _batch(
    args: argparse.Namespace,
    stub: admin_pb2_grpc.SagaAdminServiceStub,
    metadata: tuple[tuple[str, str], ...],
    say: Say,
) -> int:
    action = args.sagas_command
    if action not in ("retry", "resume"):
        say(f"--all-matching works with retry and resume, not {action}")
        return 2
    saga_filter = build_filter(args)
    what = (
        f"{action} every saga matching status={args.status or ('FAILED' if action == 'retry' else 'PAUSED')}"
        f"{' name=' + args.name if args.name else ''}{' step=' + args.step if args.step else ''}"
        f" at {args.rate:g}/s"
    )
    if not _confirm(f"{what}?", args.yes, say):
        return 1
    token, applied, refused = "", 0, 0
    while True:
        fields = dict(
            filter=saga_filter, rate_per_second=args.rate, limit=args.batch_size, page_token=token, note=args.note or ""
        )
        timeout = args.batch_size / args.rate + 60
        if action == "retry":
            result = (await stub.RetrySagas(admin_pb2.RetrySagasRequest(**fields), metadata=metadata,
                                            timeout=timeout)).result
        else:
            result = (await stub.ResumeSagas(admin_pb2.ResumeSagasRequest(**fields), metadata=metadata,
                                             timeout=timeout)).result
        for item in result.items:
            say(f"  {_when(item.at)}  {item.saga_id}  {'ok' if item.applied else 'refused: ' + item.refusal}")
        applied += result.applied
        refused += result.refused
        token = result.next_page_token
        if not token:
            break
    say(f"{action}: {applied} applied, {refused} refused")
    return 0


def add_parser(sub: argparse._SubParsersAction, order_target: str, identity_target: str,  # type: ignore[type-arg]
               run_command: Callable[[argparse.Namespace], object]) -> None:
    sagas = sub.add_parser(
        "sagas", help="saga operations (list, show, retry, pause, resume, resolve) through the admin API"
    )
    sagas.add_argument("--target", default=order_target, help="the order service (it serves the admin API)")
    sagas.add_argument("--identity", default=identity_target)
    sagas.add_argument("--user", default="operator", help="needs sagas.read; changes need sagas.operate")
    sagas.add_argument(
        "--password", help="default: SAGASCOPE_PASSWORD, else the demo user's <user>-dev-password"
    )
    commands = sagas.add_subparsers(dest="sagas_command", required=True)

    def filters(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--status", choices=STATUSES, type=str.upper)
        parser.add_argument("--name", help="saga name, e.g. CreateOrder")
        parser.add_argument("--step", help="the step the saga is at, e.g. charge")
        parser.add_argument("--older-than", type=parse_age, help="created at least this long ago: 30s, 5m, 2h, 1d")

    listing = commands.add_parser(
        "list", help="sagas matching a filter, newest first (--stalest: least recently written)"
    )
    filters(listing)
    listing.add_argument("--stalest", action="store_true", help="longest without a saga-log write first")
    listing.add_argument("--limit", type=int, default=20, help="page size (1..200)")
    listing.add_argument("--cursor", help="the next page (printed after a full page)")
    show = commands.add_parser("show", help="one saga's steps and compensations from the saga log, and its links")
    show.add_argument("id", help="saga id (saga_...), order id (ord_...) or correlation id")
    for name, text in (
        ("retry", "make a FAILED saga due now (recovery runs it under its lease)"),
        ("pause", "quarantine a saga: recovery skips it until resumed"),
        ("resume", "give a PAUSED saga back to recovery, due now"),
        ("resolve", "declare a FAILED or PAUSED saga's compensation done by hand (ends COMPENSATED)"),
    ):
        change = commands.add_parser(name, help=text)
        change.add_argument("id", nargs="?", help="saga id")
        change.add_argument("--note", required=name == "resolve", help="why (kept in the audit trail)")
        change.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        if name in ("retry", "resume"):
            change.add_argument("--all-matching", action="store_true", help="every saga matching the filter")
            change.add_argument("--rate", type=float, default=5.0, help="sagas a second for --all-matching")
            change.add_argument(
                "--batch-size", type=int, default=20, help="sagas per call for --all-matching (each call <= 600 s)"
            )
            filters(change)
    sagas.set_defaults(run=run_command)
