"""The redaction guard: passwords, tokens and Authorization values never leave the process.

Applied at every exit — the JSON log formatter, the OTLP log handler and the span
exporter — rather than trusted to every call site, because a secret usually leaks
through a place nobody thought of (an exception message, a metadata dump).

Two rules: a value under a sensitive *key* is replaced whole; a *value* that looks
like a credential (a JWT, ``Bearer ...``, ``Basic ...``, ``password=...``) is
replaced wherever it appears in free text.

This runs for every field of every log record and span, so it is kept cheap without
loosening it: the key decision is cached per key, text already found clean is
remembered, and text is only run through the credential regex when it could match
at all (see :func:`_may_hold_credential`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link

from sagascope.common.telemetry.attributes import plain

REDACTED = "[REDACTED]"

_SENSITIVE_KEY = re.compile(
    r"(password|passwd|pwd|secret|token|authori[sz]ation|api[-_.]?key|cookie|credential"
    r"|private[-_.]?key|card[-_.]?(number|no)|cvv|cvc)",
    re.IGNORECASE,
)
_SENSITIVE_VALUE = re.compile(
    r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"  # a JWT (header.payload.signature)
    r"|\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+"  # an Authorization value
    # key=value, "key": value (JSON) and 'key': value (a Python dict's repr, e.g. logged with %s)
    r"|\b(?P<key>password|passwd|pwd|secret|token|access_token|refresh_token)(?P<sep>[\"']?\s*[=:]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s,;&\"'}]+)",
    re.IGNORECASE,
)


# Every alternative of _SENSITIVE_VALUE contains one of these literally (case aside): "eyJ";
# "Bearer" / "Basic"; password, passwd ("passw"), pwd, secret, token (also in access_token and
# refresh_token). Keep this list in step with the regex; test_telemetry_redaction.py checks it.
_TRIGGERS = ("eyj", "bearer", "basic", "passw", "pwd", "secret", "token")


def _may_hold_credential(text: str) -> bool:
    """False only when ``_SENSITIVE_VALUE`` cannot match ``text``: no trigger in it, in any case.

    For ASCII text, ``str.lower`` is exactly the regex's IGNORECASE folding. Other text may fold
    differently (the Kelvin sign matches "k", the long s matches "s"), so it always gets the regex.
    """
    if not text.isascii():
        return True
    lowered = text.lower()
    for trigger in _TRIGGERS:
        if trigger in lowered:
            return True
    return False


@functools.lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    """Cached: the same few dozen keys (``saga.id``, ``rpc.method`` ...) come by on every record."""
    return _SENSITIVE_KEY.search(key) is not None


# Text already found clean. The same values pass many times — a saga's ids on each of its log
# records and spans, a statement on every execution — and a dict lookup on a string (whose hash
# Python keeps) is cheaper than lowering and scanning it again. Cleared when full; long text
# (a stack trace) is not kept.
_known_clean: dict[str, None] = {}
_KNOWN_CLEAN_MAX = 16384
_KNOWN_CLEAN_LONGEST = 1024


def _is_clean(text: str) -> bool:
    if text in _known_clean:
        return True
    if _may_hold_credential(text) and _SENSITIVE_VALUE.search(text) is not None:
        return False
    if len(text) <= _KNOWN_CLEAN_LONGEST:
        if len(_known_clean) >= _KNOWN_CLEAN_MAX:
            _known_clean.clear()
        _known_clean[text] = None
    return True


def contains_credential(text: str) -> bool:
    return not _is_clean(text)


def redact_text(text: str) -> str:
    """``text`` with every credential-looking value replaced by ``[REDACTED]``."""
    if not text or _is_clean(text):
        return text
    return _SENSITIVE_VALUE.sub(_replacement, text)


def _replacement(match: re.Match[str]) -> str:
    # Keep "password=" so the reader sees what was there, drop what followed.
    if match.group("key") is not None:
        return f"{match.group('key')}{match.group('sep')}{REDACTED}"
    return REDACTED


def redact_value(key: str, value: Any) -> Any:
    if is_sensitive_key(key):
        return REDACTED
    kind = type(value)
    if kind is str:
        return redact_text(value)
    if value is None or kind is int or kind is bool or kind is float:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return redact_mapping(value)
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [redact_value(key, item) for item in value]
    return value


def redact_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: redact_value(key, value) for key, value in values.items()}


def _needs_redaction(values: Mapping[str, Any] | None) -> bool:
    if not values:
        return False
    for key, value in plain(values).items():
        if is_sensitive_key(key):
            return True
        if isinstance(value, str):
            if contains_credential(value):
                return True
        elif isinstance(value, Sequence) and not isinstance(value, bytes):
            if any(isinstance(item, str) and contains_credential(item) for item in value):
                return True
    return False


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """``span`` itself when it is clean (the usual case, no copy), else a redacted copy."""
    description = span.status.description or ""
    events, links = span.events, span.links  # each read of these properties copies the SDK's list
    dirty = (
        _needs_redaction(span.attributes)
        or any(_needs_redaction(event.attributes) for event in events)
        or any(_needs_redaction(link.attributes) for link in links)
        or bool(description and contains_credential(description))
        or contains_credential(span.name)
    )
    if not dirty:
        return span
    status = span.status
    if description:
        status = type(status)(status.status_code, redact_text(description))
    return ReadableSpan(
        name=redact_text(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=redact_mapping(span.attributes or {}),
        events=[
            Event(event.name, redact_mapping(event.attributes or {}), event.timestamp)
            for event in events
        ],
        links=[Link(link.context, redact_mapping(link.attributes or {})) for link in links],
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanExporter(SpanExporter):
    """Wraps the real exporter; every span passes :func:`redact_span` on its way out."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([redact_span(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)
