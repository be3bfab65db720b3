"""The ``sagascope`` command: run the stack, place orders, run the demo, follow a saga, operate sagas."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from pathlib import Path

from sagascope.common.urls import redact_url
from sagascope.local.backends import LOCAL_COLLECTOR_PROFILES, LOG_PATHS
from sagascope.local.services import LocalStack, Ports
from sagascope.local.supervisor import Supervisor, grpc_serving, signalled

STATE_DIR = Path(os.environ.get("SAGASCOPE_STATE_DIR", "var"))


def _print(message: str) -> None:
    print(message, flush=True)


def _describe(stack: LocalStack) -> str:
    p = stack.ports
    return "\n".join(
        [
            f"  identity  gRPC 127.0.0.1:{p.identity_grpc}  HTTP http://127.0.0.1:{p.identity_http}  "
            f"metrics http://127.0.0.1:{p.identity_metrics}/metrics",
            f"  order     gRPC 127.0.0.1:{p.order_grpc}  metrics http://127.0.0.1:{p.order_metrics}/metrics",
            f"  payment   gRPC 127.0.0.1:{p.payment_grpc}  metrics http://127.0.0.1:{p.payment_metrics}/metrics",
            f"  mongo     {_mongo_line(stack)}",
            f"  logs      {stack.state_dir / 'logs'}",
        ]
    )


def _mongo_line(stack: LocalStack) -> str:
    if "mongo" not in stack.processes:
        return f"{redact_url(stack.mongo_url or '-')} (external; no nx-27017 started)"
    return f"mongodb://127.0.0.1:{stack.ports.mongo} (nx-27017)"


def _stack(
    faults: bool, extra_env: dict[str, str] | None = None, supervisor: Supervisor | None = None
) -> LocalStack:
    # Locally, flush spans and logs every 0.5 s (the SDK default is 5 s) so `trace`/`logs` see them at once.
    extra = {
        "OTEL_BSP_SCHEDULE_DELAY": os.environ.get("OTEL_BSP_SCHEDULE_DELAY", "500"),
        "OTEL_BLRP_SCHEDULE_DELAY": os.environ.get("OTEL_BLRP_SCHEDULE_DELAY", "500"),
        **(extra_env or {}),
    }
    if faults:
        extra["SAGASCOPE_FAULTS_ENABLED"] = "true"
    return LocalStack(
        STATE_DIR,
        Ports.from_env(),
        extra_env=extra,
        mongo_url=os.environ.get("PAYMENT_MONGO_URL"),
        supervisor=supervisor,
    )


async def _start(stack: LocalStack) -> bool:
    """Start every process; on failure say why (the failing process's log tail) and stop the rest."""
    try:
        await stack.start()
    except (RuntimeError, TimeoutError) as exc:
        _print(f"start-up failed: {exc}")
        await stack.stop()
        return False
    return True


async def cmd_up(args: argparse.Namespace) -> int:
    stack = _stack(args.faults)
    _print(f"starting sagascope ({stack.storage_summary()}) ...")
    if not await _start(stack):
        return 1
    stopped = signalled()  # before saying so, or a quick Ctrl-C would kill us without the drain
    _print("sagascope is up:\n" + _describe(stack) + "\nCtrl-C stops everything.")
    await stopped.wait()
    _print("stopping (draining in-flight calls) ...")
    await stack.stop()
    _print("stopped.")
    return 0


async def cmd_stack(args: argparse.Namespace) -> int:
    """The real backends and the services pointed at them, under one supervisor."""
    from sagascope.local.backends import BackendsNotInstalled, BackendStack
    from sagascope.local.topology import service_telemetry_environment

    supervisor = Supervisor(say=lambda m: _print(f"  {m}"))
    profiles = list(dict.fromkeys(args.collector_profile or []))
    if args.log_path == "filelog" and "filelog" not in profiles:
        profiles.append("filelog")  # the services' JSON lines are the log records then
    try:
        backends = BackendStack(
            STATE_DIR / "stack",
            Ports.from_env(),
            supervisor=supervisor,
            collector_profiles=profiles,
            service_logs=STATE_DIR / "logs",
        )
    except (BackendsNotInstalled, ValueError) as exc:
        _print(str(exc))
        return 1
    telemetry_env = service_telemetry_environment()
    if args.log_path == "filelog":
        telemetry_env["SAGASCOPE_LOG_PATH"] = "filelog"
    services = None if args.backends_only else _stack(args.faults, telemetry_env, supervisor)
    try:
        _print("starting the backends (Elasticsearch, Jaeger, the Collector, Prometheus) ...")
        await backends.start()
        if services is not None:
            _print("starting the services (OTLP -> the collector) ...")
            await services.start()
    except (RuntimeError, TimeoutError) as exc:
        _print(f"start-up failed: {exc}")
        await supervisor.stop()
        return 1
    try:
        lines = ["the backends are up:", backends.describe()]
        if services is not None:
            lines += ["the services are up:", _describe(services)]
        lines.append("to follow a saga from another shell: " + " ".join(
            f"{k}={telemetry_env[k]}" for k in ("JAEGER_URL", "ELASTICSEARCH_URL")
        ) + " sagascope trace <id> | logs <correlation id>")
        _print("\n".join(lines) + "\nCtrl-C stops everything.")
        await signalled().wait()
        _print("stopping ...")
    finally:
        await supervisor.stop()  # services first (reverse start order), then the backends
    _print("stopped.")
    return 0


async def cmd_order(args: argparse.Namespace) -> int:
    from sagascope.cli.client import OrderClient, login, order_request
    from sagascope.common.money import format_money

    token = await login(args.identity, args.user, args.password)
    client = OrderClient(args.target, token)
    try:
        result = await client.create_order(
            order_request(
                args.customer or args.user,
                args.key or f"cli-{uuid.uuid4().hex[:12]}",
                amount_minor=args.price,
                quantity=args.quantity,
                sku=args.sku,
                currency=args.currency,
            ),
            inject=tuple(args.fault or ()),
        )
    finally:
        await client.close()
    if result.order is None:
        _print(f"CreateOrder failed: {result.code.name}: {result.message}")
        _print(f"correlation id: {result.correlation_id}")
        return 1
    order = result.order
    _print(f"order {order.id}: {result.status_name}  total {format_money(order.total_minor, order.currency)}")
    if order.payment_id:
        _print(f"payment: {order.payment_id}")
    if order.failure_reason:
        _print(f"reason: {order.failure_reason}")
    _print(f"correlation id: {result.correlation_id}   ({result.elapsed_s * 1000:.0f} ms)")
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    from sagascope.cli.demo import render_table, run_scenarios

    stack = _stack(faults=True)
    started_here = False
    if await grpc_serving(stack.order_target):
        _print(
            f"reusing the running stack at {stack.order_target} (it must run with SAGASCOPE_FAULTS_ENABLED=true)"
        )
    else:
        _print(f"starting the stack ({stack.storage_summary()}) ...")
        if not await _start(stack):
            return 1
        started_here = True
        _print(_describe(stack))
    try:
        _print("\nrunning the scenarios:")
        outcomes = await run_scenarios(stack.order_target, stack.identity_target, _print)
        _print("\n" + render_table(outcomes))
        compensated = next((o for o in outcomes if o.scenario.startswith("confirm fails")), None)
        if compensated and compensated.correlation_id and not args.no_trace:
            await _show_saga(compensated.correlation_id)
        failed = [o.scenario for o in outcomes if not o.ok]
        _print(
            "\n"
            + (
                f"unexpected outcomes: {', '.join(failed)}"
                if failed
                else "all 5 scenarios behaved as expected."
            )
        )
        return 1 if failed else 0
    finally:
        if started_here:
            _print("stopping the stack ...")
            await stack.stop()


async def _show_saga(correlation_id: str) -> None:
    """The point of the project in one screen: the compensated order's trace and its logs."""
    from sagascope.cli.logs_view import logs_command
    from sagascope.cli.trace_view import trace_command

    await asyncio.sleep(1.5)  # the batch processors flush every second
    _print(f"\nthe trace of the compensated order (correlation id {correlation_id}):")
    await asyncio.to_thread(trace_command, correlation_id)
    _print(f"\nits logs, from every service (correlation id {correlation_id}):")
    await asyncio.to_thread(logs_command, correlation_id)


async def cmd_trace(args: argparse.Namespace) -> int:
    from sagascope.cli.trace_view import trace_command

    return await asyncio.to_thread(trace_command, args.id)


async def cmd_logs(args: argparse.Namespace) -> int:
    from sagascope.cli.logs_view import logs_command

    return await asyncio.to_thread(logs_command, args.correlation_id)


async def cmd_sagas(args: argparse.Namespace) -> int:
    from sagascope.cli.sagas import run

    return await run(args, _print)


async def cmd_certs(args: argparse.Namespace) -> int:
    return await asyncio.to_thread(_make_certs, Path(args.out))


def _make_certs(out: Path) -> int:
    from sagascope.common.dev_certs import make_development_pki

    issued = make_development_pki(out)
    _print(f"development CA and certificates in {out.resolve()} (development only: the CA key is there too)")
    for name, files in issued.items():
        _print(f"  {name:<9} {files.cert.name}  {files.key.name}")
    d = out.resolve()
    pairs = (("IDENTITY", "identity"), ("ORDER", "order"), ("PAYMENT", "payment"), ("SAGASCOPE", "client"))
    _print(
        "mutual TLS for the local services, e.g.:\n"
        + "".join(
            f"  export {svc}_TLS_CERT_FILE={d}/{name}.crt {svc}_TLS_KEY_FILE={d}/{name}.key "
            f"{svc}_TLS_CA_FILE={d}/ca.crt\n"
            for svc, name in pairs
        )
        + "compose: docker compose -f docker-compose.yaml -f docker-compose.tls.yaml up (certificates in var/certs)"
    )
    return 0


async def cmd_gameday(args: argparse.Namespace) -> int:
    from sagascope.cli.gameday import run_command
    from sagascope.cli.gameday_scenarios import BY_NAME, SCENARIOS

    if args.list or not args.scenario:
        _print("\n".join(f"  {s.name:<22} {s.report}" for s in SCENARIOS))
        return 0 if args.list else 2
    if args.scenario not in BY_NAME:
        _print(f"unknown scenario {args.scenario!r}; one of: {', '.join(BY_NAME)}")
        return 2
    return await run_command(BY_NAME[args.scenario], STATE_DIR, args.minutes, args.real_time)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sagascope", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser(
        "up",
        help="start the three services locally (SQLite + nx-27017, or ORDER_DATABASE_URL / PAYMENT_MONGO_URL); "
        "Ctrl-C stops them",
    )
    up.add_argument(
        "--faults", action="store_true", help="enable fault injection (SAGASCOPE_FAULTS_ENABLED=true)"
    )
    up.set_defaults(run=cmd_up)

    order = sub.add_parser(
        "order", help="log in and place one order; prints the result and its correlation id"
    )
    order.add_argument("--target", default=f"127.0.0.1:{Ports.from_env().order_grpc}")
    order.add_argument("--identity", default=f"127.0.0.1:{Ports.from_env().identity_grpc}")
    order.add_argument("--user", default="alice")
    order.add_argument("--password", default="alice-dev-password")
    order.add_argument("--customer", help="customer id (default: the user)")
    order.add_argument("--sku", default="SKU-DEMO-1")
    order.add_argument("--quantity", type=int, default=1)
    order.add_argument("--price", type=int, default=4999, help="unit price in minor units (4999 = 49.99)")
    order.add_argument("--currency", default="EUR")
    order.add_argument("--key", help="idempotency key (default: a new one)")
    order.add_argument(
        "--fault", action="append", help="ask for a fault: confirm_failure, payment_decline, ..."
    )
    order.set_defaults(run=cmd_order)

    stack = sub.add_parser(
        "stack",
        help="the real Collector, Jaeger, Elasticsearch, Prometheus (built by `make backends`) "
        "and the three services reporting to them; Ctrl-C stops everything",
    )
    stack.add_argument("--faults", action="store_true", help="enable fault injection in the services")
    stack.add_argument("--backends-only", action="store_true", help="start the backends, not the services")
    stack.add_argument(
        "--collector-profile",
        action="append",
        choices=LOCAL_COLLECTOR_PROFILES,
        help="add a collector profile (observability/otel-collector/profiles/): production = tail sampling",
    )
    stack.add_argument(
        "--log-path",
        choices=LOG_PATHS,
        default="otlp",
        help="otlp: the services export log records over OTLP; filelog: they write JSON lines only, "
        "which the collector's file_log receiver reads",
    )
    stack.set_defaults(run=cmd_stack)

    demo = sub.add_parser("demo", help="start (or reuse) the stack and run the five saga scenarios")
    demo.add_argument("--no-trace", action="store_true", help="skip the trace and log view at the end")
    demo.set_defaults(run=cmd_demo)

    trace = sub.add_parser(
        "trace", help="print a saga's trace tree (Jaeger if JAEGER_URL is set, else local files)"
    )
    trace.add_argument("id", help="order id or correlation id")
    trace.set_defaults(run=cmd_trace)

    logs = sub.add_parser(
        "logs", help="print a saga's logs (Elasticsearch if ELASTICSEARCH_URL is set, else files)"
    )
    logs.add_argument("correlation_id")
    logs.set_defaults(run=cmd_logs)

    from sagascope.cli.sagas import add_parser as add_sagas_parser

    add_sagas_parser(
        sub, f"127.0.0.1:{Ports.from_env().order_grpc}", f"127.0.0.1:{Ports.from_env().identity_grpc}", cmd_sagas
    )

    certs = sub.add_parser("certs", help="make a development CA and per-service TLS certificates (mutual TLS)")
    certs.add_argument(
        "--out", default=str(STATE_DIR / "certs"), help="directory for the PEM files (default var/certs)"
    )
    certs.set_defaults(run=cmd_certs)
    gameday = sub.add_parser(
        "gameday",
        help="start a failure scenario on the local stack with real backends and say where to look "
        "(the answer key is in observability/gamedays/)",
    )
    gameday.add_argument("scenario", nargs="?", help="the scenario (--list shows them)")
    gameday.add_argument("--list", action="store_true", help="list the scenarios")
    gameday.add_argument("--minutes", type=float, default=3.0, help="how long the fault lasts before it is lifted")
    gameday.add_argument(
        "--real-time", action="store_true", help="load the alert rules as committed (default: durations / 20)"
    )
    gameday.set_defaults(run=cmd_gameday)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
