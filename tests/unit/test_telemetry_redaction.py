"""No password, token or Authorization value reaches a log line, an OTLP log record or a span."""

from __future__ import annotations

import logging

import grpc
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

from services.common.telemetry.files import to_otlp_json
from services.common.telemetry.redaction import REDACTED, RedactingSpanExporter, redact_mapping, redact_text
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
    """The log records exactly as they would go over the wire, as OTLP/JSON."""
    return to_otlp_json(encode_logs(list(captured.logs.get_finished_logs())))


def test_free_text_credentials_are_replaced() -> None:
    assert redact_text(f"login password={PASSWORD} ok") == f"login password={REDACTED} ok"
    assert redact_text(f"Authorization: Bearer {JWT}") == f"Authorization: {REDACTED}"
    assert redact_text(f"token is {JWT}.") == f"token is {REDACTED}."
    assert redact_text('{"password": "two words"}') == f'{{"password": {REDACTED}}}'
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
