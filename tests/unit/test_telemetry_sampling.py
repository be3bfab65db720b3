"""Pool checkout spans are dropped; statements and everything else follow the user's sampler."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from opentelemetry.trace import SpanKind

from services.common.telemetry.sampling import DropPoolCheckouts


def spans_recorded(delegate) -> list[str]:  # type: ignore[no-untyped-def]
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=DropPoolCheckouts(delegate))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("saga CreateOrder"):
        with tracer.start_as_current_span("connect", kind=SpanKind.CLIENT):
            pass
        with tracer.start_as_current_span("INSERT orders", kind=SpanKind.CLIENT):
            pass
        with tracer.start_as_current_span("connect", kind=SpanKind.INTERNAL):
            pass  # not a pool checkout: kept
    return [span.name for span in exporter.get_finished_spans()]


def test_pool_checkouts_are_dropped_and_statements_kept() -> None:
    assert spans_recorded(ALWAYS_ON) == ["INSERT orders", "connect", "saga CreateOrder"]


def test_the_users_sampler_still_decides_everything_else() -> None:
    assert spans_recorded(ALWAYS_OFF) == []
