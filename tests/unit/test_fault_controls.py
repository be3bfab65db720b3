"""Game-day fault controls: a rates file a running process re-reads, the slow-database delay."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from sagascope.common.faults import Fault, FaultInjector, FaultSettings, delay_statements


def test_rates_file_switches_a_fault_on_and_off_while_running(tmp_path: Path) -> None:
    path = tmp_path / "faults"
    clock = [0.0]
    injector = FaultInjector(
        FaultSettings(enabled=True, rates={Fault.CONFIRM_FAILURE: 1.0}, rates_file=str(path)), draw=lambda: 0.5
    )
    assert injector._file is not None
    injector._file._clock = lambda: clock[0]
    assert injector.should(Fault.CONFIRM_FAILURE)  # no file: the environment's rates
    assert not injector.should(Fault.REFUND_FAILURE)
    path.write_text("refund_failure=1.0\n")
    clock[0] = 2.0
    assert injector.should(Fault.REFUND_FAILURE)
    assert not injector.should(Fault.CONFIRM_FAILURE)  # the file's rates replace the environment's
    path.write_text("refund_failure=oops")
    os.utime(path, (time.time() + 5, time.time() + 5))
    clock[0] = 4.0
    assert injector.should(Fault.REFUND_FAILURE)  # a malformed file keeps the last good rates
    path.unlink()
    clock[0] = 6.0
    assert not injector.should(Fault.REFUND_FAILURE)


def test_rates_file_ignored_unless_faults_enabled(tmp_path: Path) -> None:
    path = tmp_path / "faults"
    path.write_text("db_latency=1")
    assert not FaultInjector(FaultSettings(enabled=False, rates_file=str(path))).should(Fault.DB_LATENCY)


def test_slow_database_delays_each_statement_without_blocking_the_loop(tmp_path: Path) -> None:
    async def scenario() -> tuple[float, int]:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
        settings = FaultSettings(enabled=True, rates={Fault.DB_LATENCY: 1.0}, db_latency_ms=200)
        delay_statements(engine, FaultInjector(settings))
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        started = time.monotonic()
        async with engine.connect() as conn:
            await conn.execute(text("select 1"))
            await conn.execute(text("select 2"))
        elapsed = time.monotonic() - started
        task.cancel()
        await engine.dispose()
        return elapsed, ticks

    elapsed, ticks = asyncio.run(scenario())
    assert elapsed >= 0.4
    assert ticks >= 20  # the loop kept running while the statements waited
