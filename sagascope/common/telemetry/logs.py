"""JSON log lines on stdout, and the same records over OTLP when an exporter is configured.

Every record gets the contract's fields (ARCHITECTURE.md): ``timestamp``,
``level``, ``service.name``, ``message``, ``event``, ``trace_id``, ``span_id``,
``correlation_id``, and where known ``saga.id``, ``saga.step``, ``order.id``,
``payment.id``. Code never passes them by hand: the trace ids come from the
current span, the correlation id from the request, and the saga fields from
:func:`bind_log_fields`, which the saga observer uses around each run and step.

Named events go in ``extra={"event": "saga.step.started"}``; everything else is
``"log"``. Both sinks pass through the redaction guard; the redacted message and
fields are worked out once per record and shared by the two (:func:`redacted_fields`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, TextIO

import orjson
from opentelemetry import baggage, context, trace
from opentelemetry._logs import Logger as APILogger
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from pythonjsonlogger.core import RESERVED_ATTRS, BaseJsonFormatter
from pythonjsonlogger.json import JsonEncoder
from pythonjsonlogger.orjson import OrjsonFormatter

from sagascope.common import correlation
from sagascope.common.telemetry.redaction import redact_mapping, redact_text, redact_value

DEFAULT_EVENT = "log"
# Contract fields, in the order they appear in a JSON line.
CORE_FIELDS = (
    "timestamp",
    "level",
    "service.name",
    "logger",
    "message",
    "event",
    "trace_id",
    "span_id",
    "correlation_id",
)
CONTEXT_FIELDS = ("saga.id", "saga.name", "saga.step", "order.id", "payment.id")

_NO_FIELDS: Mapping[str, str] = MappingProxyType({})
_log_fields: ContextVar[Mapping[str, str]] = ContextVar("sagascope_log_fields", default=_NO_FIELDS)
_ENRICHED = "_sagascope_enriched"
_REDACTED = "_sagascope_redacted"
_SKIP = frozenset(RESERVED_ATTRS) | {"taskName", "message", "asctime", _ENRICHED}
# Fields already carried natively by an OTLP log record (or its resource).
_NOT_OTLP_ATTRIBUTES = frozenset({"trace_id", "span_id", "service.name", "timestamp", "level", "message"})


@contextmanager
def bind_log_fields(fields: Mapping[str, str]) -> Iterator[None]:
    """Add ``fields`` (e.g. ``saga.id``) to every record logged in this block (this task only)."""
    token = _log_fields.set(fields)
    try:
        yield
    finally:
        _log_fields.reset(token)


def current_log_fields() -> Mapping[str, str]:
    return _log_fields.get()


def current_correlation_id() -> str | None:
    cid = correlation.current()
    if cid:
        return cid
    value = baggage.get_baggage(correlation.BAGGAGE_KEY)
    return str(value) if value else None


class ContextFieldsFilter(logging.Filter):
    """Stamps the contract fields on a record once, before any handler formats it."""

    def __init__(self, service_name: str) -> None:
        super().__init__()
        self.service_name = service_name

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        if fields.get(_ENRICHED):
            return True
        fields[_ENRICHED] = True
        fields["service.name"] = self.service_name
        fields.setdefault("event", DEFAULT_EVENT)
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            fields["trace_id"] = format(span_context.trace_id, "032x")
            fields["span_id"] = format(span_context.span_id, "016x")
        else:
            fields["trace_id"] = None
            fields["span_id"] = None
        if not fields.get("correlation_id"):
            fields["correlation_id"] = current_correlation_id()
        for key, value in _log_fields.get().items():
            fields.setdefault(key, value)
        return True


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's own fields beyond the logging module's (event, saga ids, call-site extras)."""
    return {
        key: value for key, value in record.__dict__.items() if key not in _SKIP and not key.startswith("_")
    }


def redacted_fields(record: logging.LogRecord) -> tuple[str, dict[str, Any]]:
    """The record's message and :func:`extra_fields`, through the redaction guard.

    Worked out by whichever sink sees the record first and kept on it, so the JSON line and the
    OTLP record neither format the message nor redact the fields twice. (Both handlers share the
    one ContextFieldsFilter, which has stamped every field before the first of them runs.)
    """
    cached: tuple[str, dict[str, Any]] | None = record.__dict__.get(_REDACTED)
    if cached is None:
        # A formatter that already ran has left getMessage()'s result on the record, except
        # python-json-logger for a dict msg (it sets "" and spreads the dict instead).
        message = record.__dict__.get("message")
        if isinstance(record.msg, Mapping) and not record.args:
            message = str(redact_mapping(record.msg))  # its keys count, as in the JSON line
        elif not isinstance(message, str) or isinstance(record.msg, dict):
            message = record.getMessage()
        cached = (redact_text(message), redact_mapping(extra_fields(record)))
        record.__dict__[_REDACTED] = cached
    return cached


class RedactingJsonEncoder(JsonEncoder):
    """What python-json-logger makes of a non-JSON value (an exception, a dataclass, ``str(obj)``)
    passes the guard as well: that text is made after the fields were redacted."""

    def default(self, o: Any) -> Any:
        value = super().default(o)
        if isinstance(value, str):
            return redact_text(value)
        if isinstance(value, Mapping):
            return redact_mapping(value)
        return value


_ENCODER = RedactingJsonEncoder(ensure_ascii=True)
# Dataclasses and datetimes go through default() as they did with the stdlib encoder: a dataclass's
# fields pass the guard there, and a datetime keeps isoformat()'s spelling.
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


class ContractFields(BaseJsonFormatter):
    """The contract fields first, then the record's extras, every value through the redaction guard:
    the message and extras via :func:`redacted_fields`, the rest (logger name, level, a formatted
    exception or stack, a dict msg's keys) here. Shared by every encoding of the line."""

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        message, redacted = redacted_fields(record)
        extras = dict(redacted)
        log_data["timestamp"] = _timestamp(record.created)
        log_data["level"] = redact_text(record.levelname)
        log_data["service.name"] = extras.pop("service.name", None)
        log_data["logger"] = redact_value("logger", record.name)
        log_data["message"] = "" if isinstance(record.msg, dict) else message
        for key in ("event", "trace_id", "span_id", "correlation_id"):
            log_data[key] = extras.pop(key, None)
        for key in CONTEXT_FIELDS:
            if key in extras:
                log_data[key] = extras.pop(key)
        log_data.update(extras)
        if message_dict:
            log_data.update(redact_mapping(message_dict))


class JsonLineFormatter(ContractFields, OrjsonFormatter):
    """One JSON object a line (:class:`ContractFields`), encoded by python-json-logger's orjson
    formatter: the standard library's ``json`` was ~8 % of the order service's CPU under load.

    Non-JSON values take the same ``default`` as before (:class:`RedactingJsonEncoder`). What orjson
    refuses — an integer beyond 64 bits, text with lone surrogates — is encoded by the standard
    library as before, so no line is lost. Differences in content: none, except that a float NaN or
    infinity is ``null`` (valid JSON) where ``json`` wrote ``NaN``. Non-ASCII text is UTF-8 rather
    than ``\\u`` escapes; ``ascii_only=True`` keeps the escapes for a stream that cannot take UTF-8.
    """

    def __init__(self, *args: Any, ascii_only: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("json_default", _ENCODER.default)
        super().__init__(*args, **kwargs)
        self.ascii_only = ascii_only

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        if not self.ascii_only:
            try:
                return orjson.dumps(log_data, default=self.json_default, option=_ORJSON_OPTIONS).decode()
            except orjson.JSONEncodeError:
                pass
        return _ENCODER.encode(log_data)


def _takes_utf8(stream: TextIO) -> bool:
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig")


_SEVERITY = (
    (logging.CRITICAL, SeverityNumber.FATAL, "FATAL"),
    (logging.ERROR, SeverityNumber.ERROR, "ERROR"),
    (logging.WARNING, SeverityNumber.WARN, "WARN"),
    (logging.INFO, SeverityNumber.INFO, "INFO"),
    (logging.DEBUG, SeverityNumber.DEBUG, "DEBUG"),
)


def _severity(levelno: int) -> tuple[SeverityNumber, str]:
    for threshold, number, text in _SEVERITY:
        if levelno >= threshold:
            return number, text
    return SeverityNumber.TRACE, "TRACE"


def _attribute_value(value: Any) -> Any:
    """An OTLP attribute value for an (already redacted) extra field."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and all(isinstance(item, str | bool | int | float) for item in value):
        return list(value)
    return redact_text(str(value))  # text made here, from an object, passes the guard too


class OtlpLogHandler(logging.Handler):
    """Sends records to an OTel LoggerProvider with the contract fields as attributes.

    (The SDK's own ``LoggingHandler`` is deprecated and copies code paths into every
    record; this one sends exactly the fields Elasticsearch is searched by.)
    """

    def __init__(
        self, provider: LoggerProvider, level: int = logging.NOTSET, sampled_only: bool = False
    ) -> None:
        super().__init__(level)
        self.provider = provider
        # Export only records outside any trace or inside a sampled one (SAGASCOPE_LOG_EXPORT=sampled),
        # so head sampling thins the exported logs as it thins the spans.
        self.sampled_only = sampled_only
        # The SDK's get_logger takes two locks a call; the loggers of a process are few.
        self._loggers: dict[str, APILogger] = {}

    def _logger(self, name: str) -> APILogger:
        logger = self._loggers.get(name)
        if logger is None:
            logger = self._loggers[name] = self.provider.get_logger(name)
        return logger

    def emit(self, record: logging.LogRecord) -> None:
        # The exporters' own complaints must not feed back into the exporter.
        if record.name.startswith("opentelemetry"):
            return
        if self.sampled_only:
            span_context = trace.get_current_span().get_span_context()
            if span_context.is_valid and not span_context.trace_flags.sampled:
                return
        try:
            message, redacted = redacted_fields(record)
            attributes = {
                key: _attribute_value(value)
                for key, value in redacted.items()
                if value is not None and key not in _NOT_OTLP_ATTRIBUTES
            }
            attributes["logger.name"] = redact_value("logger.name", record.name)
            if record.exc_info and record.exc_info[0] is not None:
                exception = {
                    "exception.type": record.exc_info[0].__name__,
                    "exception.message": str(record.exc_info[1]),
                    "exception.stacktrace": logging.Formatter().formatException(record.exc_info),
                }
                attributes.update(redact_mapping(exception))
            number, text = _severity(record.levelno)
            event = record.__dict__.get("event")
            self._logger(record.name).emit(
                timestamp=int(record.created * 1e9),
                observed_timestamp=time.time_ns(),
                context=context.get_current(),
                severity_number=number,
                severity_text=text,
                body=message,
                attributes=attributes,
                event_name=event if isinstance(event, str) and event != DEFAULT_EVENT else None,
            )
        except Exception:
            self.handleError(record)


def _skip_unused_record_attributes() -> None:
    """Don't collect per record what no sink shows: the caller's file, line and function (a stack
    walk for every record), thread and process names. The logging docs' "Optimization" section."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def open_log_file(path: Path) -> TextIO:
    """``SAGASCOPE_LOG_FILE``: the JSON lines appended to a file instead of stdout, one flush a line
    so a reader tailing it (the collector's file_log receiver) sees each record as it is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a", buffering=1, encoding="utf-8")


def init_logging(
    service_name: str,
    level: str = "INFO",
    provider: LoggerProvider | None = None,
    stream: TextIO | None = None,
    sampled_only: bool = False,
) -> list[logging.Handler]:
    """Replace the root logger's handlers: JSON lines to ``stream`` (stdout), plus OTLP if given
    (``sampled_only``: see :class:`OtlpLogHandler`)."""
    _skip_unused_record_attributes()
    context_filter = ContextFieldsFilter(service_name)
    json_stream = stream or sys.stdout
    json_handler = logging.StreamHandler(json_stream)
    json_handler.setFormatter(JsonLineFormatter(ascii_only=not _takes_utf8(json_stream)))
    handlers: list[logging.Handler] = [json_handler]
    if provider is not None:
        handlers.append(OtlpLogHandler(provider, sampled_only=sampled_only))
    for handler in handlers:
        handler.addFilter(context_filter)
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    return handlers
