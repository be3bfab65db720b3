"""The JSON log line encoded by orjson says what the standard library's ``json`` said.

The old formatter is rebuilt from its parts — python-json-logger's stdlib ``JsonFormatter``, our
contract fields and our redacting encoder — and both format the same records; each pair of lines
must parse to the same object. The records cover extras of every kind a call site passes,
exceptions, stacks, non-ASCII text, values JSON has no type for, and what orjson refuses.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import json
import logging
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any

import pytest
from pythonjsonlogger.json import JsonFormatter

from sagascope.common.telemetry.logs import (
    ContextFieldsFilter,
    ContractFields,
    JsonLineFormatter,
    RedactingJsonEncoder,
    init_logging,
)


class StdlibJsonLineFormatter(ContractFields, JsonFormatter):
    """The formatter as it was: the same fields, encoded by ``json`` with the redacting encoder."""

    def __init__(self) -> None:
        super().__init__(json_encoder=RedactingJsonEncoder)


class Colour(enum.Enum):
    RED = "red"
    LEVEL = 3


@dataclasses.dataclass
class Card:
    holder: str
    card_number: str  # a sensitive key: redacted wherever the dataclass is spread into the line
    expires: date


class Opaque:
    def __str__(self) -> str:
        return "opaque Bearer abc.def-123"  # text made from an object passes the guard too


def _error() -> ValueError:
    try:
        raise ValueError("boom: password=hunter2 ünïcode")
    except ValueError as exc:
        return exc


EXTRAS: list[tuple[str, dict[str, Any]]] = [
    ("scalars", {"event": "saga.step.completed", "saga.id": "s-1", "order.id": "o-1", "count": 3,
                 "ratio": 0.25, "ok": True, "nothing": None, "negative": -7}),
    ("containers", {"items": [1, "two", 3.0, None], "pair": ("a", 1), "nested": {"a": {"b": [1, {"c": "d"}]}},
                    "empty": {}, "none_list": []}),
    ("unicode", {"city": "Zürich — 東京 🚀", "quote": 'say "hi"\n\ttab\\', "control": "\x00\x1f"}),
    ("dates", {"at": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), "naive": datetime(2026, 1, 2, 3, 4, 5),
               "zero_micro": datetime(2026, 1, 2, tzinfo=timezone(timedelta(hours=2))), "day": date(2026, 1, 2),
               "clock": time(3, 4, 5, 6)}),
    ("non-json values", {"id": uuid.UUID("12345678-1234-5678-1234-567812345678"), "colour": Colour.RED,
                         "level": Colour.LEVEL, "colours": Colour, "amount": Decimal("49.99"), "tags": {"x"},
                         "raw": b"\x00\xffbytes", "kind": ValueError, "path": PurePosixPath("/tmp/x"),
                         "obj": Opaque(), "delta": timedelta(seconds=90)}),
    ("dataclass", {"card": Card("A. Person", "4111111111111111", date(2030, 1, 31))}),
    ("exception value", {"error": _error()}),
    ("secrets", {"authorization": "Bearer eyJhbGciOi.eyJzdWIiOi.sig", "note": "token=abc123 and more",
                 "list": ["password=x", "fine"]}),
    ("orjson refuses", {"huge": 2**70, "surrogate": "bad \udcff byte"}),
]


def _records() -> Iterator[tuple[str, logging.LogRecord]]:
    logger = logging.getLogger("sagascope.test.encoding")
    stamp = ContextFieldsFilter("order-service")

    def make(msg: Any, args: tuple[Any, ...] = (), exc_info: Any = None, sinfo: str | None = None,
             **extra: Any) -> logging.LogRecord:
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, msg, args, exc_info,
                                   extra=extra, sinfo=sinfo)
        stamp.filter(record)
        return record

    for name, extra in EXTRAS:
        yield name, make("charged %s for %d minor units", ("o-1", 4999), **extra)
    error = _error()
    yield "exc_info", make("failed", exc_info=(type(error), error, error.__traceback__))
    yield "stack_info", make("here", sinfo="Stack (most recent call last):\n  File \"x.py\", line 1")
    yield "dict message", make({"custom": "field", "secret": "s3cret", "n": 1})
    yield "unicode message", make("naïve café ✓ %s", ("東京",))
    yield "secret in message", make("login with password=%s", ("hunter2",))


@pytest.mark.parametrize(("name", "record"), list(_records()), ids=[name for name, _ in _records()])
def test_the_orjson_line_parses_to_the_same_object_as_the_stdlib_line(name: str, record: logging.LogRecord) -> None:
    new = JsonLineFormatter().format(record)
    old = StdlibJsonLineFormatter().format(record)
    assert "\n" not in new
    assert json.loads(new) == json.loads(old)
    assert list(json.loads(new)) == list(json.loads(old))  # the same field order, contract fields first


def test_the_values_json_has_no_type_for_are_spelled_as_before() -> None:
    """Spot checks on the parsed line, so the equivalence above is not two equal mistakes."""
    records = dict(_records())
    dates = json.loads(JsonLineFormatter().format(records["dates"]))
    assert dates["at"] == "2026-01-02T03:04:05.678000+00:00" and dates["clock"] == "03:04:05.000006"
    others = json.loads(JsonLineFormatter().format(records["non-json values"]))
    assert others["colour"] == "red" and others["colours"] == ["red", 3] and others["kind"] == "ValueError"
    assert others["amount"] == "49.99" and others["id"] == "12345678-1234-5678-1234-567812345678"
    assert others["obj"] == "opaque [REDACTED]"
    card = json.loads(JsonLineFormatter().format(records["dataclass"]))["card"]
    assert card == {"holder": "A. Person", "card_number": "[REDACTED]", "expires": "2030-01-31"}
    secrets = json.loads(JsonLineFormatter().format(records["secrets"]))
    assert secrets["authorization"] == "[REDACTED]" and secrets["note"] == "token=[REDACTED] and more"
    refused = json.loads(JsonLineFormatter().format(records["orjson refuses"]))
    assert refused["huge"] == 2**70 and refused["surrogate"] == "bad \udcff byte"
    line = JsonLineFormatter().format(records["unicode message"])
    assert "naïve café ✓ 東京" in line  # UTF-8, not \\u escapes
    assert json.loads(line)["message"] == "naïve café ✓ 東京"


def test_nan_is_null_where_the_stdlib_wrote_an_invalid_nan() -> None:
    """The one difference in content: ``NaN`` is not JSON (a strict reader rejects the whole line)."""
    logger = logging.getLogger("sagascope.test.encoding")
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "x", (), None,
                               extra={"ratio": math.nan, "top": math.inf})
    ContextFieldsFilter("order-service").filter(record)
    assert json.loads(JsonLineFormatter().format(record))["ratio"] is None
    old = StdlibJsonLineFormatter().format(record)
    assert '"ratio": NaN' in old and '"top": Infinity' in old


def test_a_stream_that_cannot_take_utf8_gets_ascii_escapes() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        init_logging("order-service", stream=stream)
        logging.getLogger("sagascope.test.encoding").info("café %s", "東京")
        stream.flush()
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    line = raw.getvalue().decode("ascii")
    assert "\\u00e9" in line and json.loads(line)["message"] == "café 東京"

