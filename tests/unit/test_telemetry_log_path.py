"""SAGASCOPE_LOG_PATH / SAGASCOPE_LOG_FILE: the file_log path turns OTLP log export off and keeps
the JSON lines, on stdout or in a file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from sagascope.common.config import ConfigError
from sagascope.common.telemetry import TelemetrySettings
from sagascope.common.telemetry.logs import init_logging, open_log_file
from sagascope.common.telemetry.tracing import default_log_exporter


def test_the_default_path_exports_log_records_over_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.delenv("SAGASCOPE_LOG_PATH", raising=False)
    settings = TelemetrySettings.from_env()
    assert settings.log_path == "otlp" and settings.logs_protocol == "grpc"
    assert default_log_exporter(settings, "order-service") is not None


def test_the_filelog_path_exports_no_log_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("SAGASCOPE_LOG_PATH", "FileLog")
    settings = TelemetrySettings.from_env()
    assert settings.log_path == "filelog" and settings.logs_protocol == "none"
    assert default_log_exporter(settings, "order-service") is None
    assert settings.traces_protocol == "grpc"  # spans still go over OTLP


def test_an_unknown_log_path_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGASCOPE_LOG_PATH", "syslog")
    with pytest.raises(ConfigError, match="SAGASCOPE_LOG_PATH"):
        TelemetrySettings.from_env()


def test_the_json_lines_go_to_the_log_file_one_flushed_line_a_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAGASCOPE_LOG_FILE", str(tmp_path / "logs" / "order.jsonl"))
    settings = TelemetrySettings.from_env()
    assert settings.log_file == tmp_path / "logs" / "order.jsonl"
    stream = open_log_file(settings.log_file)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        init_logging("order-service", stream=stream)
        logging.getLogger("tests.log_path").info("written %d", 1, extra={"event": "test.event"})
        # No flush, no close: a reader tailing the file sees the line as soon as it is logged.
        (line,) = (tmp_path / "logs" / "order.jsonl").read_text().splitlines()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        stream.close()
    record = json.loads(line)
    assert (record["service.name"], record["message"], record["event"]) == ("order-service", "written 1", "test.event")
