"""The least telemetry can cost per saga: the OpenTelemetry SDK's own work for one saga's items.

    .venv/bin/python -m benchmarks.telemetry_floor [--sagas 2000] [--in-situ] [--bench-json benchmarks/out/bench.json]

One idle process (no load, no other process on the core), the spans and log records one CreateOrder
saga produces, made the way the services make them:

- order service: 8 spans — the server span, ``saga CreateOrder``, three ``saga.step`` spans, two SQL
  statement spans (the shapes opentelemetry-instrumentation-sqlalchemy makes on PostgreSQL; one statement
  per local step since issue 11; its pool-checkout ``connect`` spans are dropped by the sampler unless
  SAGASCOPE_SQL_CONNECT_SPANS=on), the client call to payment — and 6
  log records (saga started, step completed x3, saga completed, the access line; step started is DEBUG);
- payment service: 2 spans (server, the Mongo insert) and 1 record (the access line).

Three set-ups, each timed by process CPU (export threads included) after a flush, best of five:

- **SDK, nothing exported**: TracerProvider/LoggerProvider with the batch processors and exporters
  that drop everything. What the SDK spends before any byte is written; no exporter can go below it.
- **SDK + this project's exporters**: the same providers as ``init_telemetry`` builds them
  (redaction guard, OTLP-JSON lines files), records through our ``OtlpLogHandler``.

``--in-situ`` adds the loaded view: the bench's stack (PostgreSQL, one order replica, 16 in
flight, telemetry on) with py-spy sampling the order process, every busy sample given to the
innermost frame whose package is known — the upstream instrumentations
(``opentelemetry/instrumentation``), the SDK (``opentelemetry``), this project's telemetry code
(``sagascope/common/telemetry`` minus the JSON log formatter, which runs with telemetry off too),
``prometheus_client``, or everything else. Idle threads (the export threads' waits, gRPC's poller,
the metrics server) are left out.

The report compares both with what `make bench`'s targets leave telemetry (benchmarks/out/bench.json,
each process's median over the rounds): telemetry's CPU per saga at most 0.75 of a direct call's, and
the saga at most 2.5 direct calls — so telemetry may add at most 2.5 x direct - (the saga with
telemetry off). Writes benchmarks/telemetry_floor.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import platform
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from opentelemetry import context
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.util.types import AnyValue

from benchmarks import layers
from benchmarks.verdicts import SAGA_CPU_BOUND, TELEMETRY_BOUND, median_by_process
from sagascope.common.runtime import tune_garbage_collector
from sagascope.common.telemetry.files import OtlpJsonFileLogExporter, OtlpJsonFileSpanExporter
from sagascope.common.telemetry.logs import OtlpLogHandler
from sagascope.common.telemetry.tracing import build_resource, init_logger_provider, init_tracer_provider

ROOT = Path(__file__).resolve().parents[1]
Attributes = Mapping[str, AnyValue]
REPORT = ROOT / "benchmarks" / "telemetry_floor.md"
BENCH_JSON = ROOT / "benchmarks" / "out" / "bench.json"
FLUSH_EVERY = 100  # sagas: 1200 spans, below the batch processors' queue of 2048

CORRELATION = "0" * 31 + "1"
# The attributes opentelemetry-instrumentation-grpc puts on its spans (server; the client span has
# the rpc.* ones), plus the correlation_id our interceptor adds to the server span.
RPC_CLIENT: dict[str, AnyValue] = {
    "rpc.system": "grpc",
    "rpc.service": "sagascope.payments.v1.PaymentService",
    "rpc.method": "ProcessPayment",
    "rpc.grpc.status_code": 0,
}
RPC: dict[str, AnyValue] = {
    **RPC_CLIENT,
    "rpc.service": "sagascope.orders.v1.OrderService",
    "rpc.method": "CreateOrder",
    "rpc.user_agent": "grpc-python-asyncio/1.85.3 grpc-c/51.0.0 (linux; chttp2)",
    "net.peer.ip": "127.0.0.1",
    "net.peer.port": "50000",
    "net.peer.name": "localhost",
    "correlation_id": CORRELATION,
}
# opentelemetry-instrumentation-sqlalchemy with OTEL_SEMCONV_STABILITY_OPT_IN=database,http, on asyncpg.
CONNECT: dict[str, AnyValue] = {
    "server.address": "127.0.0.1",
    "server.port": 5432,
    "db.namespace": "orders",
    "db.system.name": "postgresql",
}
SQL: dict[str, AnyValue] = {
    **CONNECT,
    "db.query.text": "INSERT INTO orders (id, customer_id, status) VALUES ($1::VARCHAR, $2::VARCHAR, $3::VARCHAR)",
    "db.operation.name": "INSERT",
}
MONGO: dict[str, AnyValue] = {
    "db.system.name": "mongodb",
    "db.namespace": "payments",
    "db.collection.name": "payments",
    "server.address": "127.0.0.1",
    "server.port": 27017,
}
SAGA: dict[str, AnyValue] = {
    "saga.id": "saga_" + "a" * 32,
    "saga.name": "CreateOrder",
    "correlation_id": CORRELATION,
    "order.id": "ord_" + "b" * 32,
}
# One statement per local step since issue 11 (the saga's writes go as one CTE; the idempotency
# check is its INSERT … ON CONFLICT): the upstream instrumentation names a CTE span "WITH".
STEPS = (
    ("reserve", ("WITH",), False),
    ("charge", (), True),
    ("confirm", ("WITH",), False),
)
# The fields a saga log record carries as attributes (besides trace and span ids).
LOG_FIELDS: dict[str, AnyValue] = {
    "correlation_id": CORRELATION,
    "saga.id": SAGA["saga.id"],
    "saga.name": "CreateOrder",
    "order.id": SAGA["order.id"],
    "service": "order-service",
}


class _DropSpans(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _DropLogs(LogRecordExporter):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class SagaItems:
    """Makes one saga's spans and records through a tracer and a log sink."""

    def __init__(self, tracer: Tracer, log: Callable[[str, Attributes], None]) -> None:
        self.tracer = tracer
        self.log = log

    def _leaf(self, name: str, attributes: Attributes, kind: SpanKind = SpanKind.CLIENT) -> None:
        self.tracer.start_span(name, kind=kind, attributes=attributes).end()

    def order(self) -> None:
        with self.tracer.start_as_current_span(
            "/sagascope.orders.v1.OrderService/CreateOrder", kind=SpanKind.SERVER, attributes=RPC
        ):
            with self.tracer.start_as_current_span("saga CreateOrder", attributes=SAGA):
                self.log("saga.started", LOG_FIELDS)
                for index, (step, statements, remote) in enumerate(STEPS):
                    step_fields = {**SAGA, "saga.step": step, "saga.step.index": index}
                    with self.tracer.start_as_current_span(f"saga.step {step}", attributes=step_fields):
                        for statement in statements:
                            self._leaf(statement, SQL)
                        if remote:
                            self._leaf("/sagascope.payments.v1.PaymentService/ProcessPayment", RPC_CLIENT)
                        self.log("saga.step.completed", {**LOG_FIELDS, "saga.step": step})
                self.log("saga.completed", LOG_FIELDS)
            self.log("grpc.server.handled", {**LOG_FIELDS, "grpc.code": "OK"})

    def payment(self) -> None:
        with self.tracer.start_as_current_span(
            "/sagascope.payments.v1.PaymentService/ProcessPayment", kind=SpanKind.SERVER, attributes=RPC
        ):
            self._leaf("payments.insert", MONGO)
            self.log("grpc.server.handled", {**LOG_FIELDS, "grpc.code": "OK"})


def sdk_only() -> tuple[SagaItems, Callable[[], None]]:
    resource = build_resource("order-service", "0.1.0", "bench")
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(_DropSpans()))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(_DropLogs()))
    otel_logger = logger_provider.get_logger("sagascope.saga")

    def log(event: str, fields: Attributes) -> None:
        otel_logger.emit(
            timestamp=time.time_ns(),
            observed_timestamp=time.time_ns(),
            context=context.get_current(),
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body=event,
            attributes={**fields, "event": event},
            event_name=event,
        )

    def flush() -> None:
        tracer_provider.force_flush()
        logger_provider.force_flush()

    return SagaItems(tracer_provider.get_tracer("sagascope.saga"), log), flush


def shipped(directory: Path) -> tuple[SagaItems, Callable[[], None]]:
    resource = build_resource("order-service", "0.1.0", "bench")
    tracer_provider = init_tracer_provider(resource, OtlpJsonFileSpanExporter(directory / "traces.jsonl"))
    logger_provider = init_logger_provider(resource, OtlpJsonFileLogExporter(directory / "logs.jsonl"))
    assert logger_provider is not None
    logger = logging.getLogger("sagascope.saga.floor")
    logger.propagate = False
    logger.handlers = [OtlpLogHandler(logger_provider)]
    logger.setLevel(logging.INFO)

    def log(event: str, fields: Attributes) -> None:
        logger.info(event, extra={**fields, "event": event})

    def flush() -> None:
        tracer_provider.force_flush()
        logger_provider.force_flush()

    return SagaItems(tracer_provider.get_tracer("sagascope.saga"), log), flush


def cpu_ms_per_call(work: Callable[[], None], flush: Callable[[], None], calls: int, repeats: int = 5) -> float:
    """Process CPU (all threads, so the export threads count) per call, best of ``repeats``."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for done in range(1, calls + 1):
            work()
            if done % FLUSH_EVERY == 0:
                flush()  # a tight loop outruns the export thread; a full queue would drop items
        flush()
        best = min(best, (time.process_time() - started) / calls)
    return best * 1000


MIN_BENCH_REQUESTS = 500  # fewer is a smoke run, not a measurement


@dataclass(frozen=True)
class BenchCpu:
    """CPU ms per request from the last make bench, all processes: each process's median over the rounds."""

    direct: float
    saga_on: float
    saga_off: float
    order_on: float

    @property
    def telemetry(self) -> float:
        """What telemetry added per saga in situ (on - off)."""
        return self.saga_on - self.saga_off

    @property
    def saga_budget(self) -> float:
        """What telemetry may cost per saga for the saga's CPU to stay within SAGA_CPU_BOUND direct calls."""
        return SAGA_CPU_BOUND * self.direct - self.saga_off


def bench_cpu(path: Path) -> BenchCpu | None:
    if not path.exists():
        return None
    data = json.loads(path.read_text())

    def median_cpu(key: str) -> dict[str, float] | None:
        runs = [r for r in data.get(key, []) if r.get("cpu_ms") and r["requests"] >= MIN_BENCH_REQUESTS]
        return median_by_process(runs) if runs else None

    direct, off, on = median_cpu("direct"), median_cpu("saga_off"), median_cpu("saga")
    if direct is None or off is None or on is None:
        return None
    return BenchCpu(sum(direct.values()), sum(on.values()), sum(off.values()), on.get("order", 0.0))


# -- in situ: py-spy on the loaded order process --------------------------------------------------

# Who a frame belongs to (first match wins).
OWNERS = (
    ("ours", ("sagascope/common/telemetry/", "orjson")),
    ("instrumentation", ("opentelemetry/instrumentation/",)),
    ("sdk", ("opentelemetry/",)),
    ("prometheus", ("prometheus_client/",)),
    (
        "other",
        (
            "sqlalchemy/",
            "asyncpg/",
            "grpc/",
            "grpc_",
            "asyncio/",
            "uvloop/",
            "sagascope/",  # the services and the platform; sagascope/common/telemetry/ is matched first as "ours"
            "logging/",
            "json/",
            "jwt/",
            "cryptography/",
            "threading.py",
        ),
    ),
)
# Frames of the JSON log line to stdout, which is written with telemetry off too.
JSON_LOG_FRAMES = ("JsonLineFormatter", "ContractFields", "ContextFieldsFilter", "pythonjsonlogger")
IDLE_LEAVES = ("Event.wait", "Condition.wait", "_poll_wrapper", "serve_forever", "concurrent/futures/thread.py")
TELEMETRY = ("instrumentation", "sdk", "ours", "prometheus")


def owner_of(frames: Sequence[str]) -> str:
    """The owner of the innermost frame that has one ("instrumentation", "sdk", "ours", "prometheus",
    "other"); but
    work done for the JSON log line (our formatter and redaction included) is "json logs", unless
    the SDK or prometheus_client is what runs."""
    innermost = "other"
    for frame in reversed(frames):
        found = next((name for name, markers in OWNERS if any(m in frame for m in markers)), None)
        if found is not None:
            innermost = found
            break
    if innermost in ("instrumentation", "sdk", "prometheus"):
        return innermost
    if any(marker in frame for frame in frames for marker in JSON_LOG_FRAMES):
        return "json logs"
    return innermost


def sample_shares(lines: Iterable[str]) -> tuple[int, dict[str, float]]:
    """py-spy ``--format raw`` lines -> (busy samples, share per owner)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        thread, *frames = stack.split(";")
        if not frames:  # a thread caught between frames (py-spy --nonblocking)
            continue
        if "MainThread" not in thread and ("OtelBatch" not in thread or any(i in frames[-1] for i in IDLE_LEAVES)):
            continue
        counts[owner_of(frames)] += int(count)
    total = sum(counts.values())
    return total, {name: n / total for name, n in counts.items()} if total else {}


async def _profile_order(out_dir: Path, sagas: int) -> tuple[float, Path]:
    from benchmarks.bench_saga import bench_create_order, make_stack
    from tests.support.postgres import fresh_database, throwaway_cluster

    with throwaway_cluster() as cluster:
        url = fresh_database(cluster, "floor")
        stack = make_stack(ROOT / "benchmarks" / "out" / "stack-floor", url, True, None)
        await stack.start(timeout=120)
        try:
            await bench_create_order("warm-up", stack, 300, 16, 0)
            order = stack.processes["order"].process
            assert order is not None
            # --gil: only the thread holding the GIL, so a thread waiting for it does not count as working.
            async with layers.recording({"order": order.pid}, out_dir, gil=True) as files:
                phase = await bench_create_order("profiled", stack, sagas, 16, 0)
        finally:
            await stack.stop()
    return phase.throughput, files["order"]


def in_situ(sagas: int) -> tuple[int, dict[str, float], float]:
    out_dir = ROOT / "benchmarks" / "out" / "floor"
    out_dir.mkdir(parents=True, exist_ok=True)
    throughput, out = asyncio.run(_profile_order(out_dir, sagas))
    total, shares = sample_shares(out.read_text().splitlines())
    return total, shares, throughput


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sagas", type=int, default=2000)
    parser.add_argument("--bench-json", type=Path, default=BENCH_JSON)
    parser.add_argument(
        "--in-situ", action="store_true", help="also profile the loaded order process with py-spy (needs PostgreSQL)"
    )
    parser.add_argument("--in-situ-sagas", type=int, default=8000)
    args = parser.parse_args()

    tune_garbage_collector()  # as every service process does at start-up
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, (items, flush) in (
            ("SDK, nothing exported (the floor)", sdk_only()),
            ("SDK + this project's exporters (redaction, OTLP-JSON files)", shipped(Path(tmp))),
        ):
            cpu_ms_per_call(items.order, flush, max(1, args.sagas // 10))  # warm-up
            order = cpu_ms_per_call(items.order, flush, args.sagas)
            payment = cpu_ms_per_call(items.payment, flush, args.sagas)
            rows.append((label, order, payment))
            print(f"{label}: order {order:.3f} ms, payment {payment:.3f} ms per saga", flush=True)

    situ = in_situ(args.in_situ_sagas) if args.in_situ else None
    if situ:
        print(f"in situ: {situ[0]} busy samples, " + ", ".join(f"{k} {v:.1%}" for k, v in sorted(situ[1].items())))
    bench = bench_cpu(args.bench_json)
    REPORT.write_text(render(rows, bench, args.sagas, situ))
    print(f"wrote {REPORT.relative_to(ROOT)}")
    return 0


def render(
    rows: list[tuple[str, float, float]],
    bench: BenchCpu | None,
    sagas: int,
    situ: tuple[int, dict[str, float], float] | None,
) -> str:
    lines = [
        "# Telemetry floor: what the OpenTelemetry SDK itself spends per saga",
        "",
        f"Generated by `benchmarks/telemetry_floor.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
        f"({platform.machine()}, Python {platform.python_version()}).",
        "",
        "## Idle: one process, nothing else running",
        "",
        f"{sagas} sagas per set-up, best of five, process CPU including the export threads. Items per "
        "saga: order service 8 spans + 6 log records, payment service 2 spans + 1 record (what the "
        "naming contract asks for; see the module docstring).",
        "",
        "| set-up | order items, ms | payment items, ms | per saga, ms |",
        "|---|---|---|---|",
    ]
    for label, order, payment in rows:
        lines.append(f"| {label} | {order:.3f} | {payment:.3f} | **{order + payment:.3f}** |")
    lines.append("")
    if situ is not None:
        total, shares, throughput = situ
        lines += [
            "## In situ: the order process under the bench's load",
            "",
            f"py-spy at 200 Hz on the order service (one replica, PostgreSQL, 16 in flight, telemetry "
            f"on; {throughput:.0f} sagas/s while sampled), {total} busy samples, each given to the "
            "innermost frame with a known owner:",
            "",
            "| owner | share of the order process's CPU |",
            "|---|---|",
        ]
        labels = {
            "sdk": "OpenTelemetry SDK and API (spans, log records, context, batch processors)",
            "instrumentation": "upstream contrib instrumentations (gRPC, SQLAlchemy, pymongo spans)",
            "ours": "this project's telemetry code (RED metrics, access log, saga observer, OTLP log handler, "
            "redaction, OTLP-JSON encoding)",
            "prometheus": "prometheus_client",
            "json logs": "JSON log lines to stdout (written with telemetry off too)",
            "other": "everything else (SQLAlchemy, asyncpg, gRPC, asyncio, the services)",
        }
        for key in ("instrumentation", "sdk", "ours", "prometheus", "json logs", "other"):
            lines.append(f"| {labels[key]} | {shares.get(key, 0.0):.1%} |")
        lines.append("")
    if bench is None:
        lines.append(
            f"No `make bench` figures ({MIN_BENCH_REQUESTS}+ requests) in `benchmarks/out/bench.json`: "
            "run `make bench` first for the budget comparison."
        )
        return "\n".join(lines) + "\n"
    floor, shipped = rows[0][1] + rows[0][2], rows[1][1] + rows[1][2]
    telemetry_budget = TELEMETRY_BOUND * bench.direct
    lines += [
        "## Against make bench's targets",
        "",
        f"From the last `make bench` (each process's median over its rounds): a direct call costs "
        f"{bench.direct:.2f} ms of CPU across all processes, a saga {bench.saga_on:.2f} ms with telemetry on "
        f"and {bench.saga_off:.2f} ms with it off, so telemetry added **{bench.telemetry:.2f} ms** per saga "
        f"in situ, {bench.telemetry / shipped:.1f}x what the same items cost this idle process with our "
        "exporters (the bench's seven processes share two cores).",
        "",
        "| what telemetry may cost per saga | ms | the SDK alone, idle | with our exporters, idle | in situ |",
        "|---|---|---|---|---|",
        f"| telemetry <= {TELEMETRY_BOUND:g} direct calls | {telemetry_budget:.2f} | {floor / telemetry_budget:.0%} "
        f"| {shipped / telemetry_budget:.0%} | {bench.telemetry / telemetry_budget:.0%} |",
    ]
    if bench.saga_budget > 0:
        lines.append(
            f"| saga <= {SAGA_CPU_BOUND:g} direct calls (its room above the saga with telemetry off) "
            f"| {bench.saga_budget:.2f} | {floor / bench.saga_budget:.0%} | {shipped / bench.saga_budget:.0%} "
            f"| {bench.telemetry / bench.saga_budget:.0%} |"
        )
    else:
        lines.append(
            f"| saga <= {SAGA_CPU_BOUND:g} direct calls | none: the saga with telemetry off already costs "
            f"{bench.saga_off / bench.direct:.2f} direct calls | | | |"
        )
    if situ is not None:
        shares = situ[1]
        sdk_ms = shares.get("sdk", 0.0) * bench.order_on
        telemetry_ms = sum(shares.get(k, 0.0) for k in TELEMETRY) * bench.order_on
        lines += [
            "",
            f"- Under load, the order process spends {sum(shares.get(k, 0.0) for k in TELEMETRY):.0%} of its "
            f"{bench.order_on:.2f} ms per saga (telemetry on) on telemetry, ~{telemetry_ms:.2f} ms; the SDK's "
            f"share alone is ~{sdk_ms:.2f} ms.",
        ]
    lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
