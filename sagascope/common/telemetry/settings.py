"""Telemetry settings, read once from the environment in :func:`init_telemetry`.

Only the choices sagascope makes itself live here. Everything the OpenTelemetry
SDK already reads (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_BSP_*`` ...) is
left to the SDK, so those variables behave exactly as documented upstream.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sagascope.common.config import ConfigError, deployment_environment, env_bool, env_choice, env_str

TELEMETRY_SWITCH = "SAGASCOPE_TELEMETRY"
TELEMETRY_DIR = "SAGASCOPE_TELEMETRY_DIR"
LOG_LEVEL = "SAGASCOPE_LOG_LEVEL"
METRICS_HOST = "SAGASCOPE_METRICS_HOST"
LOG_EXPORT = "SAGASCOPE_LOG_EXPORT"
_LOG_EXPORT_CHOICES = ("all", "sampled")
LOG_PATH = "SAGASCOPE_LOG_PATH"
_LOG_PATH_CHOICES = ("otlp", "filelog")
LOG_FILE = "SAGASCOPE_LOG_FILE"
SQL_CONNECT_SPANS = "SAGASCOPE_SQL_CONNECT_SPANS"

_PROTOCOLS = ("grpc", "http/protobuf")


@dataclass(frozen=True)
class TelemetrySettings:
    # False (SAGASCOPE_TELEMETRY=off): no spans, no metric updates, no OTLP export; JSON logs stay.
    enabled: bool = True
    # Where the OTLP-JSON files go when no OTLP endpoint is set (one folder per service below it).
    directory: Path = Path("var/telemetry")
    log_level: str = "INFO"
    metrics_host: str = "127.0.0.1"
    environment: str = "development"
    # None: no OTLP endpoint configured for that signal, so it goes to the files.
    traces_protocol: str | None = None
    logs_protocol: str | None = None
    # "sampled": a record logged inside a trace the sampler dropped is not exported (OTLP/files);
    # its JSON line is written as always. "all" (default): every record is exported.
    log_export: str = "all"
    # How log records reach the collector. "otlp" (default): exported over OTLP (or to the files),
    # besides the JSON line. "filelog": JSON lines only, for a collector's file_log receiver.
    log_path: str = "otlp"
    # None: JSON lines on stdout; else appended to this file.
    log_file: Path | None = None
    # True: keep opentelemetry-instrumentation-sqlalchemy's span per pool checkout ("connect").
    sql_connect_spans: bool = False

    @classmethod
    def from_env(cls) -> TelemetrySettings:
        enabled = env_bool(TELEMETRY_SWITCH, True) and not env_bool("OTEL_SDK_DISABLED", False)
        level = env_str(LOG_LEVEL, "INFO").upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ConfigError(f"{LOG_LEVEL} must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level!r}")
        log_export = env_choice(LOG_EXPORT, "all", _LOG_EXPORT_CHOICES)
        log_path = env_choice(LOG_PATH, "otlp", _LOG_PATH_CHOICES)
        log_file = env_str(LOG_FILE, "").strip()
        return cls(
            enabled=enabled,
            directory=Path(env_str(TELEMETRY_DIR, "var/telemetry")),
            log_level=level,
            metrics_host=env_str(METRICS_HOST, "127.0.0.1"),
            environment=deployment_environment(),
            traces_protocol=_otlp_protocol("TRACES"),
            # The file_log path: the JSON line is the record, so no OTLP (or file) export of it.
            logs_protocol="none" if log_path == "filelog" else _otlp_protocol("LOGS"),
            log_export=log_export,
            log_path=log_path,
            log_file=Path(log_file) if log_file else None,
            sql_connect_spans=env_bool(SQL_CONNECT_SPANS, False),
        )


def _otlp_protocol(signal: str) -> str | None:
    """The OTLP protocol for ``signal`` when an endpoint is configured for it, else None.

    Follows the specification's precedence: the per-signal variable wins over the generic one.
    ``OTEL_<SIGNAL>_EXPORTER=none`` turns the signal's export off (no files either).
    """
    exporter = os.environ.get(f"OTEL_{signal}_EXPORTER", "otlp").strip().lower()
    if exporter == "none":
        return "none"
    endpoint = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not endpoint:
        return None
    name = f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"
    protocol = (os.environ.get(name) or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc").strip()
    if protocol not in _PROTOCOLS:
        raise ConfigError(
            f"{name} / OTEL_EXPORTER_OTLP_PROTOCOL must be one of {_PROTOCOLS}, got {protocol!r}"
        )
    return protocol
