"""Run the order service with benchmark-only what-if patches, to measure a proposed change before it is made.

    BENCH_WHATIF=no_sql_spans python -m benchmarks.whatif_order

Used by ``bench_saga.py --whatif ...``; services/ stay untouched. Patches:
- ``no_sql_spans``: no SQL statement spans (Telemetry.instrument_sqlalchemy does nothing, so
  opentelemetry-instrumentation-sqlalchemy is not attached), to price one span per statement.

(``no_pre_ping`` measured dropping ``pool_pre_ping``; that is now how sagascope/order/database.py
builds the engine, so the patch is gone.)
"""

from __future__ import annotations

import os
import runpy

from sagascope.common.telemetry import Telemetry

WHATIF = {w.strip() for w in os.environ.get("BENCH_WHATIF", "").split(",") if w.strip()}
KNOWN = {"no_sql_spans"}
if WHATIF - KNOWN:
    raise SystemExit(f"BENCH_WHATIF: unknown {sorted(WHATIF - KNOWN)}; known: {sorted(KNOWN)}")

if "no_sql_spans" in WHATIF:
    Telemetry.instrument_sqlalchemy = lambda self, engine, commenter=False: None  # type: ignore[method-assign]

runpy.run_module("sagascope.order", run_name="__main__", alter_sys=True)
