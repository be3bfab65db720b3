"""`make bench`'s verdicts: the median of per-round ratios, read from bench.json's shape; and the layer
each py-spy sample belongs to."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from benchmarks.layers import cpu_weighted, layer_of, shares, thread_layer_counts
from benchmarks.verdicts import TARGETS, floor_units, median_by_process, verdicts


def phase(cpu: dict[str, float], p95: float = 10.0, throughput: float = 100.0,
          rss: dict[str, float] | None = None) -> dict[str, Any]:
    return {"cpu_ms": cpu, "p95_ms": p95, "throughput": throughput, "peak_rss_mb": rss or {}}


def rounds_with(saga_cpu: list[float], off_cpu: list[float] | None = None, direct_cpu: float = 2.0,
                **saga: Any) -> dict[str, list[dict[str, Any]]]:
    off_cpu = off_cpu or [c - 1.0 for c in saga_cpu]
    return {
        "direct": [phase({"payment": direct_cpu - 0.5, "load client": 0.5}, p95=20.0, throughput=400.0)
                   for _ in saga_cpu],
        "saga": [phase({"order": c - 1.0, "payment": 0.5, "load client": 0.5}, **saga) for c in saga_cpu],
        "saga_off": [phase({"order": c - 1.0, "payment": 0.5, "load client": 0.5}) for c in off_cpu],
    }


def test_each_ratio_is_taken_within_its_round_and_the_verdict_is_their_median() -> None:
    # Saga CPU 4, 5, 9, 4.8, 5.2 ms against a 2 ms direct call: ratios 2.0, 2.5, 4.5, 2.4, 2.6.
    cpu = next(v for v in verdicts(rounds_with([4.0, 5.0, 9.0, 4.8, 5.2])) if v.target is TARGETS[0])
    assert cpu.per_round == pytest.approx((2.0, 2.5, 4.5, 2.4, 2.6))
    assert cpu.median == pytest.approx(2.5) and (cpu.low, cpu.high) == pytest.approx((2.0, 4.5))
    assert cpu.met  # 2.5 <= 2.5: the one wild round (4.5x) does not flip it


def test_a_verdict_follows_the_median_not_the_best_round() -> None:
    cpu = next(v for v in verdicts(rounds_with([4.0, 6.0, 6.2])) if v.target is TARGETS[0])
    assert cpu.low == pytest.approx(2.0) and cpu.median == pytest.approx(3.0) and not cpu.met


def test_an_even_count_takes_the_mean_of_the_middle_two() -> None:
    cpu = next(v for v in verdicts(rounds_with([4.0, 5.0, 6.0, 10.0])) if v.target is TARGETS[0])
    assert cpu.median == pytest.approx(2.75)


def test_telemetry_is_on_minus_off_of_the_same_round_over_that_rounds_direct_call() -> None:
    data = rounds_with([6.0, 6.0, 6.0], off_cpu=[5.0, 4.0, 5.5])
    telemetry = next(v for v in verdicts(data) if v.target is TARGETS[2])
    assert telemetry.per_round == pytest.approx((0.5, 1.0, 0.25))
    assert telemetry.median == pytest.approx(0.5) and telemetry.met


def test_p95_and_throughput_ratios_and_the_at_least_bound() -> None:
    data = rounds_with([5.0, 5.0, 5.0], p95=45.0, throughput=220.0)
    found = verdicts(data)
    p95, throughput = found[1], found[3]
    assert p95.median == pytest.approx(2.25) and p95.met
    assert throughput.median == pytest.approx(0.55) and throughput.met  # >= 0.5
    slow = verdicts(rounds_with([5.0, 5.0, 5.0], throughput=180.0))[3]
    assert slow.median == pytest.approx(0.45) and not slow.met


def test_peak_rss_counts_services_only_and_takes_each_rounds_largest() -> None:
    data = rounds_with([5.0, 5.0, 5.0])
    rss = [{"order": 110.0, "order-2": 118.0, "identity": 100.0, "mongo": 400.0, "postgres": 900.0},
           {"order": 112.0, "payment": 125.0, "empty server": 300.0},
           {"order": 111.0, "identity": 119.0}]
    for run, peaks in zip(data["saga"], rss, strict=True):
        run["peak_rss_mb"] = peaks
    memory = verdicts(data)[4]
    assert memory.per_round == (118.0, 125.0, 119.0)
    assert memory.median == 119.0 and memory.met and memory.target.bound == "≤ 120 MB"


def test_no_complete_round_is_an_error_not_a_verdict() -> None:
    data = rounds_with([5.0])
    data["saga_off"] = []
    with pytest.raises(ValueError, match="no complete round"):
        verdicts(data)


def test_floor_units_and_medians_by_process() -> None:
    data = rounds_with([5.0, 6.0, 7.0])
    data["floor"] = [phase({"empty server": 0.2, "load client": 0.3}), phase({"empty server": 0.3, "load client": 0.3}),
                     phase({"empty server": 0.25, "load client": 0.25})]
    assert floor_units(data) == pytest.approx((10.0, 10.0, 14.0))
    assert median_by_process(data["floor"]) == pytest.approx({"empty server": 0.25, "load client": 0.3})
    assert median_by_process([phase({"a": 1.0}), phase({"b": 2.0}), phase({"a": 3.0})]) == {"a": 1.0, "b": 0.0}


GRPC_SERVER = "_handle_rpc (/venv/site-packages/grpc/aio/_server.py:80)"
RUNNER = "run (/usr/lib/python3.11/asyncio/runners.py:118)"
EXECUTOR = "SagaExecutor._forward (/app/sagascope/saga/executor.py:150)"
SQLA = "Connection._execute_context (/venv/site-packages/sqlalchemy/engine/base.py:1815)"
ASYNCPG = "Connection._execute (/venv/site-packages/asyncpg/connection.py:1800)"
SDK = "Tracer.start_span (/venv/site-packages/opentelemetry/sdk/trace/__init__.py:1200)"
SQL_SPAN = "EngineTracer._before_cur_exec (/venv/site-packages/opentelemetry/instrumentation/sqlalchemy/engine.py:1)"
PYMONGO = "AsyncCollection.insert_one (/venv/site-packages/pymongo/asynchronous/collection.py:900)"
LOGGING = "Logger.handle (/usr/lib/python3.11/logging/__init__.py:1636)"
FORMAT = "ContractFields.add_fields (/app/sagascope/common/telemetry/logs.py:170)"
OTLP = "OtlpLogHandler.emit (/app/sagascope/common/telemetry/logs.py:222)"


@pytest.mark.parametrize(
    ("frames", "layer"),
    [
        ([RUNNER], "event loop + gRPC core (native)"),
        ([RUNNER, GRPC_SERVER], "gRPC (Python)"),
        ([RUNNER, GRPC_SERVER, EXECUTOR], "our code"),
        ([RUNNER, EXECUTOR, SQLA, ASYNCPG], "SQL"),
        ([RUNNER, EXECUTOR, SQLA, SQL_SPAN], "telemetry SDK"),  # the instrumentation's span work is telemetry's
        ([RUNNER, EXECUTOR, SQLA, SQL_SPAN, SDK], "telemetry SDK"),
        ([RUNNER, EXECUTOR, PYMONGO], "MongoDB"),
        ([RUNNER, EXECUTOR, LOGGING, FORMAT], "JSON log lines"),
        ([RUNNER, EXECUTOR, LOGGING, FORMAT, "_timestamp (/app/sagascope/common/telemetry/logs.py:115)"],
         "JSON log lines"),
        ([RUNNER, EXECUTOR, LOGGING], "JSON log lines"),
        ([RUNNER, EXECUTOR, LOGGING, OTLP], "our telemetry code"),
        (["<module> (/usr/lib/python3.11/something.py:1)"], "other"),
    ],
)
def test_a_sample_belongs_to_the_layer_of_its_innermost_known_frame(frames: list[str], layer: str) -> None:
    assert layer_of(frames) == layer


def test_layer_counts_read_py_spy_raw_lines_and_skip_idle_threads() -> None:
    lines = [
        f"MainThread (0x1);{RUNNER};{EXECUTOR};{SQLA} 7",
        f"MainThread (0x1);{RUNNER} 3",
        "OtelBatchSpanRecordProcessor (0x2);Thread.run (/usr/lib/python3.11/threading.py:975);"
        "Condition.wait (/usr/lib/python3.11/threading.py:324) 50",
        "Thread-1 (0x3);Thread._bootstrap (/usr/lib/python3.11/threading.py:995);"
        "Event.wait (/usr/lib/python3.11/threading.py:622) 9",
        "thread (4): Thread-2 (serve_forever);_PollLikeSelector.select (/usr/lib/python3.11/selectors.py:415) 4",
        "thread (5): Thread-1 (_poll_wrapper);Thread.run (/usr/lib/python3.11/threading.py:982) 5",
        "",
    ]
    assert sum(thread_layer_counts(lines).values(), Counter()) == {"SQL": 7, "event loop + gRPC core (native)": 3 + 5}


def test_layers_are_weighted_by_what_the_kernel_charged_each_thread() -> None:
    lines = [
        f"thread (11): MainThread;{RUNNER};{EXECUTOR};{SQLA} 30",
        f"thread (11): MainThread;{RUNNER} 10",
        # Blocked in gRPC core, yet counted busy by py-spy: the kernel says it used almost nothing.
        "thread (12): Thread-1 (_poll_wrapper);Thread.run (/usr/lib/python3.11/threading.py:982) 40",
    ]
    per_thread = thread_layer_counts(lines)
    assert per_thread[11] == {"SQL": 30, "event loop + gRPC core (native)": 10}
    # thread 13 has no Python frames (gRPC's event engine): its CPU is native.
    weighted = cpu_weighted(per_thread, {11: 2.0, 12: 0.02, 13: 0.3})
    assert weighted["SQL"] == pytest.approx(1.5)
    assert weighted["event loop + gRPC core (native)"] == pytest.approx(0.5 + 0.02 + 0.3)
    assert shares(weighted)["SQL"] == pytest.approx(1.5 / 2.32)
