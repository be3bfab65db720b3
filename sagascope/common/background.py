"""One background coroutine owned by a component (saga recovery, the saga-log gauges): started
with the service, cancelled and awaited when it stops; or a step repeated at an interval."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any


class BackgroundTask:
    def __init__(self, name: str) -> None:
        self.name = name
        self._task: asyncio.Task[None] | None = None

    def start(self, body: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.create_task(body, name=self.name)

    def start_every(
        self, interval: float, step: Callable[[], Awaitable[object]], failed: Callable[[], None]
    ) -> None:
        """Run ``step`` every ``interval`` seconds until stopped. A step that raises does not end the
        loop: ``failed`` runs inside the ``except`` (so it can log the exception), and the next
        step comes after the interval as usual."""

        async def every() -> None:
            while True:
                try:
                    await step()
                except Exception:
                    failed()
                await asyncio.sleep(interval)

        self.start(every())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
