"""The seam between the saga executor and telemetry.

The executor calls these hooks around every saga, step and compensation; the
telemetry package implements them (spans, JSON log events, metrics). Step code
never sees any of it. :class:`NoopSagaObserver` is used when telemetry is off.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

# saga.outcome values (ARCHITECTURE.md naming contract)
OUTCOME_COMPLETED = "completed"
OUTCOME_COMPENSATED = "compensated"
OUTCOME_FAILED = "failed"


@dataclass(frozen=True)
class SagaRun:
    saga_id: str
    saga_name: str
    correlation_id: str
    # Business ids known for this saga, with contract names: {"order.id": ..., "payment.id": ...}
    attributes: Mapping[str, str] = field(default_factory=dict)
    # True when recovery resumed the saga after a restart or a lost lease.
    resumed: bool = False
    # W3C traceparent of the run that started the saga, so a resumed run can link to it.
    origin_traceparent: str | None = None


class StepScope(Protocol):
    """One running step or compensation; the executor reports its failure here."""

    def failed(self, reason: str, error: BaseException | None = None) -> None: ...


class SagaScope(Protocol):
    """One run of a saga. A new saga counts as started only when the executor calls
    :meth:`started` (its first write is durable): a run that ends without it — e.g. its
    idempotency key was taken — is not counted or logged as a saga."""

    def started(self) -> None:
        """The saga is durable (a new one was created, or a resumed one was claimed)."""
        ...

    def traceparent(self) -> str | None:
        """The W3C traceparent of this run's saga span (persisted for later links)."""
        ...

    def set_attribute(self, key: str, value: str) -> None:
        """A business id learnt during the run (e.g. ``payment.id``)."""
        ...

    def step(self, step: str, index: int) -> AbstractContextManager[StepScope]: ...

    def compensation(
        self, step: str, index: int, reason: str, failed: StepScope | None
    ) -> AbstractContextManager[StepScope]:
        """``failed`` is the scope of the step whose failure triggered compensation (span link)."""
        ...

    def finished(self, outcome: str, reason: str = "") -> None: ...


class SagaObserver(Protocol):
    def saga(self, run: SagaRun) -> AbstractContextManager[SagaScope]: ...


class _NoopStep:
    def failed(self, reason: str, error: BaseException | None = None) -> None:
        pass


class _NoopSaga:
    def started(self) -> None:
        pass

    def traceparent(self) -> str | None:
        return None

    def set_attribute(self, key: str, value: str) -> None:
        pass

    @contextmanager
    def step(self, step: str, index: int) -> Iterator[StepScope]:
        yield _NoopStep()

    @contextmanager
    def compensation(
        self, step: str, index: int, reason: str, failed: StepScope | None
    ) -> Iterator[StepScope]:
        yield _NoopStep()

    def finished(self, outcome: str, reason: str = "") -> None:
        pass


class NoopSagaObserver:
    @contextmanager
    def saga(self, run: SagaRun) -> Iterator[SagaScope]:
        yield _NoopSaga()
