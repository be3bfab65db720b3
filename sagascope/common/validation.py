"""Request field checks shared by every servicer; each failure names the field."""

from __future__ import annotations

import re

from sagascope.common.errors import InvalidArgument
from sagascope.common.money import MAX_AMOUNT_MINOR, is_known_currency

MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 512
# Ids and keys are opaque, but printable and without spaces so they log and index cleanly.
_ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-@/+=]+")


def require_id(value: str, field: str, max_length: int = MAX_ID_LENGTH) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > max_length:
        raise InvalidArgument(field, f"is {len(value)} characters long; at most {max_length} are allowed")
    if not _ID_PATTERN.fullmatch(value):
        raise InvalidArgument(
            field, "may contain only letters, digits and . _ : - @ / + = (no spaces or control characters)"
        )
    return value


def optional_text(value: str, field: str, max_length: int = MAX_TEXT_LENGTH) -> str:
    if len(value) > max_length:
        raise InvalidArgument(field, f"is {len(value)} characters long; at most {max_length} are allowed")
    if any(ord(ch) < 32 for ch in value):
        raise InvalidArgument(field, "must not contain control characters")
    return value


def one_line(value: str, max_length: int = MAX_TEXT_LENGTH) -> str:
    """Free text made acceptable to :func:`optional_text`: whitespace and control characters
    collapse to single spaces, then the text is cut to ``max_length``. For reasons we forward
    (a database error's message spans lines; the participant would refuse it for ever)."""
    return " ".join("".join(ch if ord(ch) >= 32 else " " for ch in value).split())[:max_length]


def require_currency(value: str, field: str = "currency") -> str:
    if not value:
        raise InvalidArgument(field, "is required (an ISO 4217 code such as EUR)")
    if not is_known_currency(value):
        raise InvalidArgument(field, f"{value[:16]!r} is not a supported ISO 4217 currency code")
    return value


def require_amount(value: int, field: str) -> int:
    if value <= 0:
        raise InvalidArgument(field, f"must be a positive amount in minor units, got {value}")
    if value > MAX_AMOUNT_MINOR:
        raise InvalidArgument(field, f"{value} exceeds the maximum of {MAX_AMOUNT_MINOR} minor units")
    return value


def require_range(value: int, field: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low} and {high}, got {value}")
    return value
