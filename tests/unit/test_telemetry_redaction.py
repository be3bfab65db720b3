"""No password, token or Authorization value reaches a log line, an OTLP log record or a span."""

from __future__ import annotations

import logging
import random
import re

import grpc
from opentelemetry import trace

from sagascope.common.telemetry.otlp_json import encode_logs_json
from sagascope.common.telemetry.redaction import (
    _SENSITIVE_VALUE,
    _TRIGGERS,
    REDACTED,
    RedactingSpanExporter,
    _replacement,
    is_sensitive_key,
    redact_mapping,
    redact_text,
)
from tests.support.telemetry_testing import (
    ECHO_METHOD,
    CapturedTelemetry,
    in_memory_telemetry,
    start_echo_server,
)

PASSWORD = "hunter2-Secret!"
JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSIsInJvbGUiOiJjdXN0b21lciJ9.c2lnbmF0dXJlLWJ5dGVz"

log = logging.getLogger("tests.redaction")


def otlp_json_of_logs(captured: CapturedTelemetry) -> str:
    """The log records exactly as the file exporter writes them, as OTLP/JSON."""
    return encode_logs_json(list(captured.logs.get_finished_logs()))


def test_free_text_credentials_are_replaced() -> None:
    assert redact_text(f"login password={PASSWORD} ok") == f"login password={REDACTED} ok"
    assert redact_text(f"Authorization: Bearer {JWT}") == f"Authorization: {REDACTED}"
    assert redact_text(f"token is {JWT}.") == f"token is {REDACTED}."
    assert redact_text('{"password": "two words"}') == f'{{"password": {REDACTED}}}'
    assert redact_text(f"login {dict(password=PASSWORD)}") == f"login {{'password': {REDACTED}}}"
    assert redact_text("saga.step charge for order o-1") == "saga.step charge for order o-1"


def test_values_under_sensitive_keys_are_replaced_whole() -> None:
    assert redact_mapping(
        {"password": PASSWORD, "authorization": "x", "order.id": "o", "access_token": "t"}
    ) == {
        "password": REDACTED,
        "authorization": REDACTED,
        "order.id": "o",
        "access_token": REDACTED,
    }


def test_no_secret_in_json_lines_otlp_logs_or_spans() -> None:
    with in_memory_telemetry("identity-service") as captured:
        tracer = trace.get_tracer("t", tracer_provider=captured.telemetry.tracer_provider)
        with tracer.start_as_current_span(
            "login", attributes={"user.password": PASSWORD, "user.name": "alice"}
        ) as span:
            span.set_attribute("http.request.header.authorization", f"Bearer {JWT}")
            span.add_event("issued", {"note": f"token {JWT}"})
            log.info("login for alice with password=%s", PASSWORD, extra={"password": PASSWORD, "token": JWT})
            try:
                raise ValueError(f"bad credentials: password={PASSWORD}")
            except ValueError as exc:
                span.record_exception(exc)
                log.exception("login failed")
        stdout = captured.stdout.getvalue()
        otlp_logs = otlp_json_of_logs(captured)
        spans = "".join(span.to_json() for span in captured.spans.get_finished_spans())
    for name, text in (("stdout", stdout), ("otlp logs", otlp_logs), ("spans", spans)):
        assert PASSWORD not in text, name
        assert JWT not in text, name
        assert REDACTED in text, name
    assert "alice" in spans  # the guard keeps what is not secret


async def test_authorization_metadata_never_reaches_a_span_or_log() -> None:
    with in_memory_telemetry("payment-service") as captured:

        async def behavior(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            log.info("metadata %s", dict(context.invocation_metadata() or ()))
            return b""

        server = await start_echo_server(behavior, captured.telemetry.server_interceptors())
        try:
            async with grpc.aio.insecure_channel(
                f"127.0.0.1:{server.port}", interceptors=captured.telemetry.client_interceptors()
            ) as channel:
                await channel.unary_unary(ECHO_METHOD)(b"", metadata=(("authorization", f"Bearer {JWT}"),))
        finally:
            await server.stop()
        everything = (
            captured.stdout.getvalue()
            + "".join(span.to_json() for span in captured.spans.get_finished_spans())
            + otlp_json_of_logs(captured)
        )
    assert captured.spans.get_finished_spans()
    assert JWT not in everything


def test_a_clean_span_is_exported_as_is() -> None:
    class Keep:
        def __init__(self) -> None:
            self.spans: list[object] = []

        def export(self, spans):  # type: ignore[no-untyped-def]
            self.spans.extend(spans)

    with in_memory_telemetry() as captured:
        tracer = trace.get_tracer("t", tracer_provider=captured.telemetry.tracer_provider)
        with tracer.start_as_current_span("clean", attributes={"order.id": "o"}):
            pass
    (span,) = captured.spans.get_finished_spans()
    keep = Keep()
    RedactingSpanExporter(keep).export([span])  # type: ignore[arg-type]
    assert keep.spans == [span]


def _regex_only(text: str) -> str:
    """The guard without its fast precheck: what redact_text must always equal."""
    return _SENSITIVE_VALUE.sub(_replacement, text)


def test_every_alternative_of_the_credential_regex_contains_a_precheck_trigger() -> None:
    keywords = re.search(r"\(\?P<key>([^)]*)\)", _SENSITIVE_VALUE.pattern)
    assert keywords is not None
    literals = [*keywords.group(1).split("|"), "eyJ", "Bearer", "Basic"]
    assert "|".join(literals[-2:]) in _SENSITIVE_VALUE.pattern and literals[-3] in _SENSITIVE_VALUE.pattern
    for literal in literals:
        assert any(trigger in literal.lower() for trigger in _TRIGGERS), literal


def test_the_precheck_never_lets_through_what_the_regex_catches() -> None:
    caught = [
        f"PASSWORD={PASSWORD}",
        f"Pwd: {PASSWORD}",
        f"x sEcReT='{PASSWORD}'",
        f"REFRESH_TOKEN={PASSWORD}",
        f"authorization: bEaReR {JWT}",
        "BASIC dXNlcjpwYXNz",
        JWT.upper(),
        f"to\u212aen={PASSWORD}",  # KELVIN SIGN: the regex folds it to "k"; not ASCII, so no precheck
        f"pa\u017f\u017fword={PASSWORD}",  # LATIN SMALL LETTER LONG S folds to "s"
        f"caf\u00e9 password={PASSWORD}",
        f"{ {'token': PASSWORD} }",
    ]
    for text in caught:
        assert _regex_only(text) != text, text
        assert redact_text(text) == _regex_only(text), text
    # A differential check over random text built from the regex's own pieces.
    pieces = [
        *_TRIGGERS, "PASS", "word", "Word", "_", "access", "refresh", "=", ":", " ", '"', "'", "eyJ", "abcd",
        ".", "x", "9", "\u212a", "\u017f", "\u00e9", "Bear", "er ", "Bas", "ic ", "tok", "en",
    ]
    rng = random.Random(20240613)
    for _ in range(20000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        assert redact_text(text) == _regex_only(text), text


def test_the_sensitive_key_decision_is_cached_and_unchanged() -> None:
    for key in ("password", "user.password", "Authorization", "http.request.header.authorization", "api-key", "x"):
        first = is_sensitive_key(key)
        assert is_sensitive_key(key) is first
    assert is_sensitive_key("user.password") and not is_sensitive_key("order.id")
    assert is_sensitive_key.cache_info().hits > 0


def test_text_made_from_objects_is_redacted_in_both_sinks() -> None:
    """An exception or any object in ``extra`` becomes text after the fields were redacted."""

    class Header:
        def __str__(self) -> str:
            return f"Authorization: Bearer {JWT}"

    with in_memory_telemetry() as captured:
        log.warning(
            "login failed for %s",
            {"user": "alice", "password": PASSWORD},
            extra={"error": ValueError(f"password={PASSWORD}"), "header": Header(), "items": [Header()]},
        )
        log.info({"note": "a dict msg", "api_key": PASSWORD})
        stdout = captured.stdout.getvalue()
        otlp_logs = otlp_json_of_logs(captured)
    for name, text in (("stdout", stdout), ("otlp logs", otlp_logs)):
        assert PASSWORD not in text and JWT not in text, name
        assert REDACTED in text, name
