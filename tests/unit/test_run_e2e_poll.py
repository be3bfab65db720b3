"""tools/run_e2e.py waits for conditions with a deadline, not for a fixed time."""

from __future__ import annotations

import time

from tools.run_e2e import poll


async def test_poll_returns_as_soon_as_the_condition_holds_and_rides_out_errors() -> None:
    answers = iter([OSError("connection refused"), (False, "1 of 3"), (True, "3 of 3")])

    def probe() -> tuple[bool, str]:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    started = time.monotonic()
    assert await poll("three things", probe, deadline_s=5, every_s=0.01)
    assert time.monotonic() - started < 1


async def test_poll_gives_up_at_its_deadline() -> None:
    started = time.monotonic()
    assert not await poll("never", lambda: (False, "nothing yet"), deadline_s=0.2, every_s=0.05)
    assert 0.2 <= time.monotonic() - started < 1.5
