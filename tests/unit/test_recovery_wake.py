"""Waking recovery (after an operator's retry or resume) runs one extra pass at a time: a paced
batch wakes it once per saga, and the wakes coalesce instead of stacking passes."""

from __future__ import annotations

import asyncio
from typing import Any

from sagascope.saga.recovery import RecoveryWorker


class _Store:
    def __init__(self) -> None:
        self.passes = 0
        self.running = 0
        self.most_at_once = 0

    async def claim_due(self, limit: int) -> list[Any]:
        self.passes += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        await asyncio.sleep(0.05)
        self.running -= 1
        return []


class _Executor:
    def __init__(self) -> None:
        self.store = _Store()


async def test_wakes_coalesce_into_one_pass_at_a_time_and_one_more_after() -> None:
    executor = _Executor()
    worker = RecoveryWorker(executor, interval_seconds=3600)  # type: ignore[arg-type]
    for _ in range(10):  # before the pass starts: one pass
        worker.wake()
    await asyncio.sleep(0.02)
    for _ in range(10):  # while it runs: one more after it
        worker.wake()
    await asyncio.sleep(0.3)
    assert executor.store.most_at_once == 1
    assert executor.store.passes == 2
    worker.wake()
    await asyncio.sleep(0.1)
    assert executor.store.passes == 3  # a later wake gets its own pass
    await worker.stop()
