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
from sagascope.saga.definition import CallContext, LocalStep, SagaDefinition, StepFailed, Writes
from sagascope.saga.observer import (
    OUTCOME_COMPENSATED,
    OUTCOME_COMPLETED,
    OUTCOME_FAILED,
    SagaObserver,
    SagaRun,
    SagaScope,
    StepScope,
)
from sagascope.saga.store import FailureKind, LeaseLost, SagaRecord, SagaStatus, SagaStore

S = TypeVar("S")
log = logging.getLogger(__name__)

# Joins why the saga compensates and why its compensation is stuck, in failure_reason.
PENDING_MARK = "; compensation pending: "


def split_failure(failure_reason: str) -> tuple[str, str]:
    """(why the saga compensates, the latest cause): the part after PENDING_MARK when a
    compensation is stuck, else the reason itself."""
    original, mark, pending = failure_reason.partition(PENDING_MARK)
    return original, pending if mark else original

# Backoff for retrying a stuck compensation: 1 s, 2 s, 4 s ... capped.
STUCK_RETRY_MAX_S = 60.0


def stuck_retry_delay(attempts: int) -> float:
    return float(min(STUCK_RETRY_MAX_S, 2 ** max(0, attempts - 1)))


class SagaExecutor(Generic[S]):
    def __init__(self, definition: SagaDefinition[S], store: SagaStore, observer: SagaObserver) -> None:
        self.definition = definition
        self.store = store
        self.observer = observer

    async def start(self, saga_id: str, state: S, correlation_id: str) -> tuple[SagaRecord, S] | None:
        """Create the saga with its first step's writes (one write) and drive it to an end.

        None when the first step's :class:`Claim` met an existing row (e.g. the idempotency
        key was used already): nothing was written and the saga did not start. Other errors
        of the first step propagate unchanged; nothing was written either.
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
                reference=self.definition.reference(state) if self.definition.reference else "",
            )
            first = self.definition.steps[0]
            assert isinstance(first, LocalStep)
            with scope.step(first.name, 0):
                record.began(first.name, 0, compensation=False)
                writes = await first.action(state)
                record.ended("completed")
                self._mark_next_started(record)
                record.state = self.definition.encode(state)
                if not await self.store.create(record, writes):
                    return None
                scope.started()
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
            scope.started()
            if record.status == SagaStatus.FAILED:
                record.status = SagaStatus.COMPENSATING
            # A remote step the log marks as sent may have been applied by the previous
            # orchestrator, whatever this attempt's failure says (found by `make chaos`).
            in_doubt = record.step_index if record.status == SagaStatus.RUNNING and record.step_started else None
            await self._drive(record, state, scope, in_doubt)
        return record, state

    # -- internals -------------------------------------------------------------------------

    async def _drive(self, record: SagaRecord, state: S, scope: SagaScope, in_doubt: int | None = None) -> None:
        failed_step: StepScope | None = None
        try:
            if record.status == SagaStatus.RUNNING:
                failed_step = await self._forward(record, state, scope, in_doubt)
            if record.status == SagaStatus.COMPENSATING:
                await self._compensate(record, state, scope, failed_step)
            if record.unsaved:
                await self.store.write(record)
                record.unsaved = False
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

    async def _before_call(self, record: SagaRecord) -> None:
        """The saga log is written before every outgoing call: pending progress and "sent"."""
        if record.unsaved or not record.step_started:
            record.step_started = True
            await self.store.write(record)
            record.unsaved = False

    async def _forward(
        self, record: SagaRecord, state: S, scope: SagaScope, in_doubt: int | None
    ) -> StepScope | None:
        steps = self.definition.steps
        while record.step_index < len(steps):
            index = record.step_index
            step = steps[index]
            with scope.step(step.name, index) as step_scope:
                record.began(step.name, index, compensation=False)
                try:
                    if isinstance(step, LocalStep):
                        before = (record.status, record.step_index, record.step_started, record.state)
                        try:
                            writes = await step.action(state)
                            self._advance(record, state)
                            record.ended("completed")
                            await self.store.write(record, writes)
                        except BaseException:
                            # Nothing was written: the record and the state in memory go back.
                            record.status, record.step_index, record.step_started, record.state = before
                            state = _restore(state, self.definition.decode(record.state))
                            raise
                        record.unsaved = False
                    else:
                        await self._before_call(record)
                        key = self.definition.action_key(record.id, index)
                        await step.action(state, CallContext(record.id, key, key))
                        # Written with the next write (the next local step's, or the last one).
                        self._advance(record, state)
                        record.ended("completed")
                        record.unsaved = True
                        for key, value in self.definition.describe(state).items():
                            scope.set_attribute(key, value)
                except LeaseLost:
                    raise
                except Exception as exc:
                    reason, maybe_applied, kind = _classify(step.name, exc)
                    step_scope.failed(reason, exc)
                    record.ended("failed", reason)
                    remote = not isinstance(step, LocalStep)
                    maybe_applied = maybe_applied or index == in_doubt
                    # A remote call whose effect is unknown is compensated too (by idempotency key).
                    start_at = index if (remote and maybe_applied) else index - 1
                    record.status = SagaStatus.COMPENSATING
                    record.failure_reason = reason
                    record.failure_kind = kind
                    record.step_index = self.definition.previous_compensable(start_at)
                    record.step_started = False
                    record.state = self.definition.encode(state)
                    # Written before the compensation's call, or with its local writes.
                    record.unsaved = True
                    return step_scope
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
        if record.step_index < 0:
            record.status = SagaStatus.COMPENSATED  # nothing to undo
        while record.step_index >= 0:
            index = record.step_index
            step = self.definition.steps[index]
            assert step.compensation is not None
            with scope.compensation(step.name, index, record.failure_reason, failed_step) as comp_scope:
                record.began(step.name, index, compensation=True)
                try:
                    next_index = self.definition.previous_compensable(index - 1)
                    if isinstance(step, LocalStep):
                        assert step.compensation is not None
                        before = (record.status, record.step_index, record.step_started, record.state)
                        try:
                            writes = await step.compensation(state, record.failure_reason)
                            self._compensated(record, state, next_index)
                            record.ended("completed")
                            await self.store.write(record, writes)
                        except BaseException:
                            record.status, record.step_index, record.step_started, record.state = before
                            raise
                        record.unsaved = False
                    else:
                        await self._before_call(record)
                        context = CallContext(
                            record.id,
                            self.definition.compensation_key(record.id, index),
                            self.definition.action_key(record.id, index),
                            record.failure_reason,
                        )
                        await step.compensation(state, context)
                        self._compensated(record, state, next_index)
                        record.ended("completed")
                        record.unsaved = True
                except LeaseLost:
                    raise
                except Exception as exc:
                    reason, _, kind = _classify(f"compensate {step.name}", exc)
                    comp_scope.failed(reason, exc)
                    record.ended("failed", reason)
                    record.failure_kind = kind
                    original, _ = split_failure(record.failure_reason)
                    await self._park(record, state, f"{original}{PENDING_MARK}{reason}")
                    return

    def _compensated(self, record: SagaRecord, state: S, next_index: int) -> None:
        record.step_index = next_index
        # The next compensation, if remote, may be sent once this is written.
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
        writes: Writes = ()
        if self.definition.on_stuck is not None:
            writes = await self.definition.on_stuck(state, reason)
        record.state = self.definition.encode(state)
        await self.store.write(record, writes, release=True)
        record.unsaved = False


def _restore(state: S, snapshot: S) -> S:
    """Undo a failed local step's in-memory changes (its transaction rolled back too)."""
    if hasattr(state, "__dict__"):
        state.__dict__.update(snapshot.__dict__)
        return state
    return snapshot


def _classify(step: str, exc: BaseException) -> tuple[str, bool, FailureKind]:
    """(reason for people, maybe_applied, kind) for a failed step or compensation."""
    if isinstance(exc, StepFailed):
        return exc.reason, False, FailureKind.BUSINESS
    if isinstance(exc, DownstreamRejected):
        # A participant that broke (INTERNAL, ...) rather than refused may have applied the call.
        reason = f"{step}: {exc.target} refused: {exc.code.name}: {exc.details}"
        return reason, exc.maybe_applied, FailureKind.REJECTED
    if isinstance(exc, DownstreamUnavailable):
        return f"{step}: {exc}", exc.maybe_applied, FailureKind.UNAVAILABLE
    return f"{step}: unexpected {type(exc).__name__}: {exc}", True, FailureKind.UNEXPECTED
