"""Export batches: 128 items by default, the standard OTEL_BSP_* / OTEL_BLRP_* variables as they are."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import pytest
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from sagascope.common.telemetry.logs import OtlpLogHandler
from sagascope.common.telemetry.tracing import (
    EXPORT_BATCH_SIZE,
    build_resource,
    export_batch_size,
    init_logger_provider,
    init_tracer_provider,
)

RESOURCE = build_resource("batching-test", "0", "test")


class BatchSizes(SpanExporter, LogRecordExporter):
    """Records the size of every batch it is handed."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def export(self, batch: Sequence[ReadableSpan] | Sequence[ReadableLogRecord]):  # type: ignore[override]
        self.sizes.append(len(batch))
        if batch and isinstance(batch[0], ReadableSpan):
            return SpanExportResult.SUCCESS
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def first_batch(exporter: BatchSizes, produce: Callable[[], None], wait_s: float) -> int | None:
    """Produce items and return the size of the first batch the worker sends on its own."""
    produce()
    deadline = time.monotonic() + wait_s
    while not exporter.sizes and time.monotonic() < deadline:
        time.sleep(0.02)
    return exporter.sizes[0] if exporter.sizes else None


@pytest.fixture(autouse=True)
def no_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only a full batch wakes the worker within the test: the schedule delay is an hour.
    for prefix in ("OTEL_BSP", "OTEL_BLRP"):
        monkeypatch.setenv(f"{prefix}_SCHEDULE_DELAY", "3600000")
        monkeypatch.delenv(f"{prefix}_MAX_EXPORT_BATCH_SIZE", raising=False)
        monkeypatch.delenv(f"{prefix}_MAX_QUEUE_SIZE", raising=False)


@pytest.mark.parametrize(
    ("variables", "spans", "first"),
    [
        ({}, EXPORT_BATCH_SIZE, 128),
        # The standard variable wins.
        ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "32"}, 40, 32),
        # The SDK refuses a batch larger than its queue (its own default of 512 included).
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "100"}, 100, 100),
    ],
    ids=["default", "batch-size-variable", "smaller-queue"],
)
def test_the_first_span_batch_goes_out_at_the_batch_size(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], spans: int, first: int
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    exporter = BatchSizes()
    provider = init_tracer_provider(RESOURCE, exporter)
    tracer = provider.get_tracer("test")

    def produce() -> None:
        for i in range(spans):
            tracer.start_span(f"span {i}").end()

    try:
        assert first_batch(exporter, produce, wait_s=5) == first
    finally:
        provider.shutdown()


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, 128),
        ({"OTEL_BLRP_MAX_QUEUE_SIZE": "4096"}, 128),
        ({"OTEL_BLRP_MAX_QUEUE_SIZE": "50"}, 50),
        ({"OTEL_BLRP_MAX_QUEUE_SIZE": "lots"}, None),
        ({"OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "16"}, None),
    ],
)
def test_batch_size_by_variables(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], expected: int | None
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert export_batch_size("OTEL_BLRP") == expected


def test_log_records_go_out_in_batches_of_128_by_default() -> None:
    exporter = BatchSizes()
    provider = init_logger_provider(RESOURCE, exporter)
    assert provider is not None
    logger = logging.getLogger("tests.batching")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers = [OtlpLogHandler(provider)]

    def produce() -> None:
        for i in range(EXPORT_BATCH_SIZE):
            logger.info("record %d", i)

    try:
        assert first_batch(exporter, produce, wait_s=5) == EXPORT_BATCH_SIZE
    finally:
        logger.handlers = []
        provider.shutdown()
