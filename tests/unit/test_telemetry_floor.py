"""The telemetry-floor benchmark's sample attribution: who a py-spy stack's CPU belongs to."""

from __future__ import annotations

import pytest

from benchmarks.telemetry_floor import owner_of, sample_shares

SERVER = "ServerTelemetryInterceptor.intercept_service (/app/sagascope/common/telemetry/grpc_interceptors.py:80)"
SAGA = "SagaExecutor._forward (/app/sagascope/saga/executor.py:150)"
SQLA = "Connection._execute_context (/venv/site-packages/sqlalchemy/engine/base.py:1815)"
SQL_SPAN = (
    "EngineTracer._before_cur_exec (/venv/site-packages/opentelemetry/instrumentation/sqlalchemy/engine.py:345)"
)
START_SPAN = "Tracer.start_span (/venv/site-packages/opentelemetry/sdk/trace/__init__.py:1200)"
LOGGING = "Logger.handle (/usr/lib/python3.11/logging/__init__.py:1636)"
JSON_FORMAT = "JsonLineFormatter.add_fields (/app/sagascope/common/telemetry/logs.py:170)"
REDACT = "redact_text (/app/sagascope/common/telemetry/redaction.py:97)"
OTLP_HANDLER = "OtlpLogHandler.emit (/app/sagascope/common/telemetry/logs.py:222)"
SDK_EMIT = "Logger.emit (/venv/site-packages/opentelemetry/sdk/_logs/_internal/__init__.py:851)"


@pytest.mark.parametrize(
    ("frames", "owner"),
    [
        # Business work under the server interceptor is not telemetry's, however deep it runs.
        ([SERVER, SAGA, SQLA], "other"),
        ([SERVER, SAGA, SQLA, SQL_SPAN], "instrumentation"),
        ([SERVER, SAGA, SQLA, SQL_SPAN, START_SPAN], "sdk"),
        # The JSON line is written with telemetry off too: our formatter and its redaction are not telemetry.
        ([SERVER, SAGA, LOGGING, JSON_FORMAT, REDACT], "json logs"),
        # The same redaction for the OTLP record is.
        ([SERVER, SAGA, LOGGING, OTLP_HANDLER, REDACT], "ours"),
        ([SERVER, SAGA, LOGGING, OTLP_HANDLER, SDK_EMIT], "sdk"),
        (["<built-in method select>"], "other"),
    ],
)
def test_a_sample_belongs_to_its_innermost_known_frame(frames: list[str], owner: str) -> None:
    assert owner_of(frames) == owner


def test_shares_count_the_main_thread_and_busy_export_threads_only() -> None:
    lines = [
        f"thread (1): MainThread;{SERVER};{SAGA};{SQLA} 6",
        f"thread (1): MainThread;{SERVER};{SAGA};{SQLA};{SQL_SPAN};{START_SPAN} 2",
        "thread (2): OtelBatchSpanRecordProcessor;BatchProcessor._export (/venv/site-packages/opentelemetry/"
        "sdk/_shared_internal/__init__.py:187);encode_spans_json (/app/sagascope/common/telemetry/otlp_json.py:330) 2",
        # Idle waits and other threads do not count.
        "thread (2): OtelBatchSpanRecordProcessor;BatchProcessor.worker (x);Event.wait (threading.py:629) 50",
        "thread (3): Thread-1 (_poll_wrapper);Thread.run (threading.py:982) 40",
        "thread (1): MainThread 3",  # no frames: nothing to attribute
    ]
    total, shares = sample_shares(lines)
    assert total == 10
    assert shares == {"other": 0.6, "sdk": 0.2, "ours": 0.2}
