"""Fault injection, off unless enabled — modelled on the opentelemetry-demo feature flags.

Faults are switched on per rate (``SAGASCOPE_FAULTS="confirm_failure=0.1,payment_decline=0.05"``),
per rate from a file a running process re-reads (``SAGASCOPE_FAULTS_FILE``, same syntax; what
``sagascope gameday`` writes to start a fault and removes to lift it, so background work such
as recovery sees the fault too), or per request with the ``x-sagascope-fault`` metadata header
(comma-separated fault names). All are honoured only when ``SAGASCOPE_FAULTS_ENABLED=true``.
The order service forwards the header to payment, so one request can ask for a
fault anywhere in the saga.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import grpc

from sagascope.common.config import ConfigError, env_bool, env_int, env_str
from sagascope.common.interceptors import UnaryBehavior, metadata_value, wrap_unary

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

HEADER = "x-sagascope-fault"
log = logging.getLogger(__name__)


class Fault(StrEnum):
    PAYMENT_DECLINE = "payment_decline"  # payment answers DECLINED
    PAYMENT_LATENCY = "payment_latency"  # payment sleeps SAGASCOPE_FAULT_LATENCY_MS first
    PAYMENT_UNREACHABLE = "payment_unreachable"  # order's payment client fails as if the host were down
    CONFIRM_FAILURE = "confirm_failure"  # order's final confirm step fails -> refund
    CONFIRM_LATENCY = "confirm_latency"  # order's confirm step sleeps SAGASCOPE_FAULT_LATENCY_MS first
    REFUND_FAILURE = "refund_failure"  # payment's RefundPayment answers UNAVAILABLE (compensation fails)
    DB_LATENCY = "db_latency"  # order's every SQL statement waits SAGASCOPE_FAULT_DB_LATENCY_MS first


@dataclass(frozen=True)
class FaultSettings:
    enabled: bool = False
    rates: Mapping[Fault, float] = field(default_factory=dict)
    latency_ms: int = 1500
    db_latency_ms: int = 250
    rates_file: str = ""  # re-read when it changes; its rates replace ``rates`` while it exists

    @classmethod
    def from_env(cls) -> FaultSettings:
        return cls(
            enabled=env_bool("SAGASCOPE_FAULTS_ENABLED", False),
            rates=parse_rates(env_str("SAGASCOPE_FAULTS", "")),
            latency_ms=env_int("SAGASCOPE_FAULT_LATENCY_MS", 1500),
            db_latency_ms=env_int("SAGASCOPE_FAULT_DB_LATENCY_MS", 250),
            rates_file=env_str("SAGASCOPE_FAULTS_FILE", ""),
        )


def parse_rates(spec: str) -> dict[Fault, float]:
    rates: dict[Fault, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        try:
            fault = Fault(name.strip())
            rate = float(value)
        except ValueError:
            raise ConfigError(
                f"SAGASCOPE_FAULTS: {part!r} is not <fault>=<rate>; faults are "
                + ", ".join(f.value for f in Fault)
            ) from None
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"SAGASCOPE_FAULTS: rate for {fault} must be within 0..1, got {rate}")
        rates[fault] = rate
    return rates


def parse_requested(header: str | None) -> frozenset[Fault]:
    faults = set()
    for name in filter(None, (p.strip() for p in (header or "").split(","))):
        try:
            faults.add(Fault(name))
        except ValueError:
            log.warning("ignoring unknown fault %r in %s", name[:40], HEADER)
    return frozenset(faults)


class RatesFile:
    """Rates from a file, re-read at most once a second when its mtime changes; none when absent.

    A malformed file is logged and ignored (the previous rates stay), so a typo during a game
    day never crashes a service."""

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._checked = float("-inf")
        self._mtime: float | None = None
        self._rates: dict[Fault, float] | None = None

    def current(self) -> dict[Fault, float] | None:
        now = self._clock()
        if now - self._checked < 1.0:
            return self._rates
        self._checked = now
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:
            self._mtime, self._rates = None, None
            return None
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                with open(self.path, encoding="utf-8") as handle:
                    self._rates = parse_rates(handle.read().replace("\n", ","))
                log.warning("fault rates from %s: %s", self.path, self._rates or "none")
            except (OSError, ConfigError) as exc:
                log.error("ignoring fault file %s: %s", self.path, exc)
        return self._rates


_requested: ContextVar[frozenset[Fault]] = ContextVar("requested_faults", default=frozenset())


class FaultInjector:
    """Answers "inject this fault now?" for the current request."""

    def __init__(self, settings: FaultSettings, draw: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self._draw = draw
        self._file = RatesFile(settings.rates_file) if settings.rates_file else None

    def should(self, fault: Fault) -> bool:
        if not self.settings.enabled:
            return False
        if fault in _requested.get():
            return True
        from_file = self._file.current() if self._file else None
        rate = (from_file if from_file is not None else self.settings.rates).get(fault, 0.0)
        return rate > 0.0 and self._draw() < rate

    @property
    def latency_seconds(self) -> float:
        return self.settings.latency_ms / 1000.0

    @property
    def db_latency_seconds(self) -> float:
        return self.settings.db_latency_ms / 1000.0

    def outgoing_metadata(self) -> tuple[tuple[str, str], ...]:
        """Forward the faults this request asked for to the next service."""
        requested = _requested.get()
        if not self.settings.enabled or not requested:
            return ()
        return ((HEADER, ",".join(sorted(requested))),)


class FaultHeaderInterceptor(grpc.aio.ServerInterceptor):
    """Reads ``x-sagascope-fault`` into the request context (ignored unless enabled)."""

    def __init__(self, settings: FaultSettings) -> None:
        self.settings = settings

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = await continuation(handler_call_details)
        if not self.settings.enabled:
            return handler
        requested = parse_requested(metadata_value(handler_call_details.invocation_metadata, HEADER))
        if not requested:
            return handler

        def wrap(behavior: UnaryBehavior) -> UnaryBehavior:
            async def with_faults(request, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
                token = _requested.set(requested)
                try:
                    return await behavior(request, context)
                finally:
                    _requested.reset(token)

            return with_faults

        return wrap_unary(handler, wrap)


def delay_statements(engine: AsyncEngine, faults: FaultInjector) -> None:
    """The slow-database fault: each SQL statement of ``engine`` waits first while ``db_latency``
    is on. The wait is awaited inside SQLAlchemy's greenlet (``await_only``), so it slows the
    statement's caller, as a slow server would, without blocking the event loop."""
    if not faults.settings.enabled:
        return  # no listener at all: every statement of a production engine would pay for it
    from sqlalchemy import event
    from sqlalchemy.util import await_only

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _slow_statement(*_args: object) -> None:
        if faults.should(Fault.DB_LATENCY):
            await_only(asyncio.sleep(faults.db_latency_seconds))
