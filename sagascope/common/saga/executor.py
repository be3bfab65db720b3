"""The one generic saga executor: persistence, compensation, recovery hooks, telemetry.

Step code only does business work; this module decides what runs next, writes
the saga log before every outgoing call, classifies failures (definitely no
effect / effect unknown), compensates in reverse order, and parks a saga as
FAILED when a compensation cannot finish yet, for recovery to retry.
"""

from __future__ import annotations

import logging
import time
from typing import Generic, TypeVar

from sagascope.common.resilience import DownstreamRejected, DownstreamUnavailable
from sagascope.common.saga.definition import CallContext, LocalStep, SagaDefinition, StepFailed
from sagascope.common.saga.observer import (
    OUTCOME_COMPENSATED,
    OUTCOME_COMPLETED,
    OUTCOME_FAILED,
    SagaObserver,
    SagaRun,
    SagaScope,
    StepScope,
)
from sagascope.common.saga.store import LeaseLost, SagaRecord, SagaStatus, SagaStore

S = TypeVar("S")
log = logging.getLogger(__name__)

# Joins why the saga compensates and why its compensation is stuck, in failure_reason.
PENDING_MARK = "; compensation pending: "

# Backoff for retrying a stuck compensation: 1 s, 2 s, 4 s ... capped.
STUCK_RETRY_MAX_S = 60.0


def stuck_retry_delay(attempts: int) -> float:
    return float(min(STUCK_RETRY_MAX_S, 2 ** max(0, attempts - 1)))


class SagaExecutor(Generic[S]):
    def __init__(self, definition: SagaDefinition[S], store: SagaStore, observer: SagaObserver) -> None:
        self.definition = definition
        self.store = store
        self.observer = observer

    async def start(self, saga_id: str, state: S, correlation_id: str) -> tuple[SagaRecord, S]:
        """Create the saga (running step 0 in the same transaction) and drive it to an end.

        Errors of step 0 (e.g. a duplicate idempotency key) propagate unchanged:
        nothing was written.
        """
        run = SagaRun(saga_id, self.definition.name, correlation_id, self.definition.describe(state))
        with self.observer.saga(run) as scope:
            record = SagaRecord(
                id=saga_id,
                name=self.definition.name,
                status=SagaStatus.RUNNING,
                step_index=1,
                state={},
                correlation_id=correlation_id,
                traceparent=scope.traceparent() or "",
            )
            first = self.definition.steps[0]
            assert isinstance(first, LocalStep)
            with scope.step(first.name, 0):

                async def reserve(session):  # type: ignore[no-untyped-def]
                    await first.action(state, session)
                    self._mark_next_started(record)
                    record.state = self.definition.encode(state)

                await self.store.create(record, reserve)
            await self._drive(record, state, scope)
            return record, state

    async def resume(self, record: SagaRecord) -> tuple[SagaRecord, S]:
        """Continue a claimed saga after a restart, a lost lease or a parked compensation."""
        state = self.definition.decode(record.state)
        run = SagaRun(
            record.id,
            self.definition.name,
            record.correlation_id,
            self.definition.describe(state),
            resumed=True,
            origin_traceparent=record.traceparent or None,
        )
        with self.observer.saga(run) as scope:
            if record.status == SagaStatus.FAILED:
                record.status = SagaStatus.COMPENSATING
            await self._drive(record, state, scope)
        return record, state

    # -- internals -------------------------------------------------------------------------

    async def _drive(self, record: SagaRecord, state: S, scope: SagaScope) -> None:
        failed_step: StepScope | None = None
        try:
            if record.status == SagaStatus.RUNNING:
                failed_step = await self._forward(record, state, scope)
            if record.status == SagaStatus.COMPENSATING:
                await self._compensate(record, state, scope, failed_step)
        except LeaseLost:
            log.warning("saga %s: lease lost, another orchestrator continues it", record.id)
            raise
        self._report_finish(record, scope)

    def _report_finish(self, record: SagaRecord, scope: SagaScope) -> None:
        outcome = {
            SagaStatus.COMPLETED: OUTCOME_COMPLETED,
            SagaStatus.COMPENSATED: OUTCOME_COMPENSATED,
            SagaStatus.FAILED: OUTCOME_FAILED,
        }[record.status]
        scope.finished(outcome, record.failure_reason)

    def _mark_next_started(self, record: SagaRecord) -> None:
        """Entering a remote step: the log says "may have been sent" before the call goes out."""
        steps = self.definition.steps
        record.step_started = record.step_index < len(steps) and not isinstance(
            steps[record.step_index], LocalStep
        )

    async def _forward(self, record: SagaRecord, state: S, scope: SagaScope) -> StepScope | None:
        steps = self.definition.steps
        # True while the record in memory holds progress not yet written (a remote step's
        # result): it is written together with the next local step, saving a round trip.
        unsaved = False
        while record.step_index < len(steps):
            index = record.step_index
            step = steps[index]
            with scope.step(step.name, index) as step_scope:
                try:
                    if isinstance(step, LocalStep):
                        before = (record.status, record.step_index, record.step_started, record.state)
                        try:
                            async with self.store.transition(record) as session:
                                await step.action(state, session)
                                self._advance(record, state)
                        except BaseException:
                            # The transaction rolled back: so do the record and the state in memory.
                            record.status, record.step_index, record.step_started, record.state = before
                            state = _restore(state, self.definition.decode(record.state))
                            raise
                        unsaved = False
                    else:
                        if unsaved:
                            await self.store.save(record)
                        if not record.step_started:
                            record.step_started = True
                            await self.store.save(record)
                        key = self.definition.action_key(record.id, index)
                        context = CallContext(record.id, key, key)
                        await step.action(state, context)
                        self._advance(record, state)
                        unsaved = True
                        for key, value in self.definition.describe(state).items():
                            scope.set_attribute(key, value)
                except LeaseLost:
                    raise
                except Exception as exc:
                    reason, maybe_applied = _classify(step.name, exc)
                    step_scope.failed(reason, exc)
                    record.last_error = exc
                    remote = not isinstance(step, LocalStep)
                    # A remote call whose effect is unknown is compensated too (by idempotency key).
                    start_at = index if (remote and maybe_applied) else index - 1
                    record.status = SagaStatus.COMPENSATING
                    record.failure_reason = reason
                    record.step_index = self.definition.previous_compensable(start_at)
                    record.step_started = False
                    record.state = self.definition.encode(state)
                    await self.store.save(record)
                    return step_scope
        if unsaved:
            await self.store.save(record)
        return None

    def _advance(self, record: SagaRecord, state: S) -> None:
        record.step_index += 1
        record.state = self.definition.encode(state)
        if record.step_index >= len(self.definition.steps):
            record.status = SagaStatus.COMPLETED
            record.step_started = False
        else:
            self._mark_next_started(record)

    async def _compensate(
        self, record: SagaRecord, state: S, scope: SagaScope, failed_step: StepScope | None
    ) -> None:
        while record.step_index >= 0:
            index = record.step_index
            step = self.definition.steps[index]
            assert step.compensation is not None
            with scope.compensation(step.name, index, record.failure_reason, failed_step) as comp_scope:
                try:
                    next_index = self.definition.previous_compensable(index - 1)
                    if isinstance(step, LocalStep):
                        assert step.compensation is not None
                        async with self.store.transition(record) as session:
                            await step.compensation(state, session, record.failure_reason)
                            self._compensated(record, state, next_index)
                    else:
                        if not record.step_started:
                            record.step_started = True
                            await self.store.save(record)
                        context = CallContext(
                            record.id,
                            self.definition.compensation_key(record.id, index),
                            self.definition.action_key(record.id, index),
                            record.failure_reason,
                        )
                        await step.compensation(state, context)
                        self._compensated(record, state, next_index)
                        await self.store.save(record)
                except LeaseLost:
                    raise
                except Exception as exc:
                    reason, _ = _classify(f"compensate {step.name}", exc)
                    comp_scope.failed(reason, exc)
                    record.last_error = exc
                    original = record.failure_reason.split(PENDING_MARK, 1)[0]
                    await self._park(record, state, f"{original}{PENDING_MARK}{reason}")
                    return

    def _compensated(self, record: SagaRecord, state: S, next_index: int) -> None:
        record.step_index = next_index
        record.step_started = False
        record.state = self.definition.encode(state)
        if next_index < 0:
            record.status = SagaStatus.COMPENSATED

    async def _park(self, record: SagaRecord, state: S, reason: str) -> None:
        """A compensation cannot finish now: FAILED, retried by recovery with backoff."""
        record.status = SagaStatus.FAILED
        record.failure_reason = reason
        record.step_started = False
        record.attempts += 1
        record.next_attempt_at = time.time() + stuck_retry_delay(record.attempts)
        async with self.store.transition(record) as session:
            if self.definition.on_stuck is not None:
                await self.definition.on_stuck(state, session, reason)
            record.state = self.definition.encode(state)
        await self.store.release(record)


def _restore(state: S, snapshot: S) -> S:
    """Undo a failed local step's in-memory changes (its transaction rolled back too)."""
    if hasattr(state, "__dict__"):
        state.__dict__.update(snapshot.__dict__)
        return state
    return snapshot


def _classify(step: str, exc: BaseException) -> tuple[str, bool]:
    """(reason for people, maybe_applied) for a failed step or compensation."""
    if isinstance(exc, StepFailed):
        return exc.reason, False
    if isinstance(exc, DownstreamRejected):
        return f"{step}: {exc.target} refused: {exc.code.name}: {exc.details}", False
    if isinstance(exc, DownstreamUnavailable):
        return f"{step}: {exc}", exc.maybe_applied
    return f"{step}: unexpected {type(exc).__name__}: {exc}", True
