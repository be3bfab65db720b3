"""Recovery: on start-up and periodically, resume every unfinished saga nobody holds.

A saga becomes due when its lease expired (its orchestrator crashed or hung)
or, for a parked FAILED saga, when its retry time came. Claiming is a
compare-and-set on the lease, so several replicas can run this loop at once.
A PAUSED saga is never due (an operator quarantined it; ResumeSaga gives it back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sagascope.common.background import BackgroundTask
from sagascope.saga.executor import SagaExecutor
from sagascope.saga.store import LeaseLost

log = logging.getLogger(__name__)


class RecoveryWorker:
    def __init__(self, executor: SagaExecutor[Any], interval_seconds: float, batch_size: int = 20) -> None:
        self.executor = executor
        self.interval_seconds = interval_seconds
        self.batch_size = batch_size
        self._background = BackgroundTask("saga-recovery")
        # Wakes are coalesced: one extra pass runs at a time, and once more if woken meanwhile
        # (a paced batch resume wakes it for every saga).
        self._woken: asyncio.Task[None] | None = None
        self._wake_again = False

    async def run_once(self) -> int:
        """Resume every due saga once; returns how many were resumed."""
        records = await self.executor.store.claim_due(self.batch_size)
        for record in records:
            try:
                await self.executor.resume(record)
            except LeaseLost:
                pass
            except Exception:
                # One broken saga must not stop the others; it stays due and is retried.
                log.exception("saga %s: recovery attempt failed", record.id)
        return len(records)

    async def _drain(self) -> None:
        while await self.run_once() >= self.batch_size:
            pass  # a backlog: keep draining before sleeping

    def wake(self) -> None:
        """A pass now, beside the periodic one (an operator made a saga due): claiming is a
        compare-and-set, so two passes at once still drive each saga once."""
        self._wake_again = True
        if self._woken is None or self._woken.done():
            self._woken = asyncio.get_running_loop().create_task(self._drain_woken(), name="saga-recovery-now")

    async def _drain_woken(self) -> None:
        while self._wake_again:
            self._wake_again = False
            try:
                await self._drain()
            except Exception:
                log.exception("recovery pass (woken) failed; the periodic pass retries")

    def start(self) -> None:
        self._background.start_every(
            self.interval_seconds,
            self._drain,
            lambda: log.exception("recovery pass failed; retrying in %.1fs", self.interval_seconds),
        )

    async def stop(self) -> None:
        await self._background.stop()
        task, self._woken = self._woken, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
