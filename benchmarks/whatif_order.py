"""Run the order service with benchmark-only what-if patches, to measure a proposed change before it is made.

    BENCH_WHATIF=no_pre_ping,no_sql_spans python -m benchmarks.whatif_order

Used by ``bench_saga.py --whatif ...``; services/ stay untouched. Patches:
- ``no_pre_ping``: the PostgreSQL engine without ``pool_pre_ping`` (each checkout otherwise costs
  BEGIN; SELECT 1; ROLLBACK before the real work);
- ``no_sql_spans``: no SQLAlchemy auto-instrumentation (one span per statement and per connect).
"""

from __future__ import annotations

import os
import runpy

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import services.order.database as database
import services.order.server as server
from services.common.telemetry import Telemetry

WHATIF = {w.strip() for w in os.environ.get("BENCH_WHATIF", "").split(",") if w.strip()}
KNOWN = {"no_pre_ping", "no_sql_spans"}
if WHATIF - KNOWN:
    raise SystemExit(f"BENCH_WHATIF: unknown {sorted(WHATIF - KNOWN)}; known: {sorted(KNOWN)}")

if "no_pre_ping" in WHATIF:
    original = database.create_engine

    def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
        if database.async_url(url).startswith("sqlite"):
            return original(url, pool_size)
        return create_async_engine(database.async_url(url), pool_size=pool_size, max_overflow=pool_size)

    server.create_engine = create_engine  # type: ignore[assignment]

if "no_sql_spans" in WHATIF:
    Telemetry.instrument_sqlalchemy = lambda self, engine: None  # type: ignore[method-assign]

runpy.run_module("services.order", run_name="__main__", alter_sys=True)
