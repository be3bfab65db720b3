"""Running a service's main coroutine on the fastest event loop available.

uvloop (libuv) when installed — it cuts the event loop's own share of CPU for
the many small socket reads of gRPC, asyncpg and MongoDB — else the standard
loop. ``SAGASCOPE_EVENT_LOOP=asyncio`` forces the standard one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from services.common.config import env_str


def run(main: Coroutine[Any, Any, None]) -> None:
    choice = env_str("SAGASCOPE_EVENT_LOOP", "uvloop")
    if choice == "uvloop":
        try:
            import uvloop
        except ImportError:
            choice = "asyncio"
        else:
            uvloop.run(main)
            return
    asyncio.run(main)
