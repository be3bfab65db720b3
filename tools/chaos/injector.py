"""Runs the fault schedule against the environment, one lane at a time per lane, and logs what it did.

The :class:`Gate` ties the schedule to the workload: an event is due once ``at_saga`` sagas were
issued, and the workload waits before issuing saga ``at_saga`` until the event has started.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from tools.chaos import confirm
from tools.chaos.environment import Environment
from tools.chaos.schedule import FaultEvent, Lane, Link, NetworkFault, ProcessFault, Target, Toxic
from tools.chaos.toxiproxy import Toxiproxy


@dataclass
class InjectedFault:
    """What happened to one scheduled event (times in seconds since the campaign started)."""

    kind: str
    lane: str
    at_saga: int
    started_s: float = 0.0
    ended_s: float = 0.0
    held_s: float = 0.0  # toxic in place / process down
    back_s: float | None = None  # process faults: how long the restart took until healthy
    error: str = ""
    # Read back from the system (tools.chaos.confirm): toxiproxy listed the toxic and then no longer
    # did; or the old pid died and a new pid serves. Only confirmed faults count as injected.
    confirmed: bool = False
    unconfirmed: str = ""  # why not, when the injection ran without error but could not be confirmed
    note: str = ""  # what else the campaign had to do (a hung toxiproxy restarted)


class Gate:
    """``clean_from``/``settle_s``: sagas from ``clean_from`` on wait until every fault healed and
    ``settle_s`` more seconds passed (the clean tail; None: no such hold)."""

    def __init__(self, events: list[FaultEvent], clean_from: int | None = None, settle_s: float = 0.0) -> None:
        self.events = sorted(events, key=lambda e: e.at_saga)
        self._started = [asyncio.Event() for _ in self.events]
        self._index = {id(event): i for i, event in enumerate(self.events)}
        self._issued = 0
        self._progress = asyncio.Condition()
        self._clean_from = clean_from
        self._settle_s = settle_s
        self._healed = asyncio.Event()
        self._healed_at = 0.0

    async def admit(self, saga_index: int) -> None:
        """Before saga ``saga_index`` is issued: every event due by then must have started (and,
        in the clean tail, every event healed and settled)."""
        for event, started in zip(self.events, self._started, strict=True):
            if event.at_saga > saga_index:
                break
            await started.wait()
        if self._clean_from is not None and saga_index >= self._clean_from:
            await self._healed.wait()
            await asyncio.sleep(max(0.0, self._healed_at + self._settle_s - time.monotonic()))
        async with self._progress:
            self._issued = saga_index + 1
            self._progress.notify_all()

    async def due(self, event: FaultEvent) -> None:
        async with self._progress:
            await self._progress.wait_for(lambda: self._issued >= event.at_saga)

    def started(self, event: FaultEvent) -> None:
        self._started[self._index[id(event)]].set()

    def all_healed(self) -> None:
        """The injector is done: no fault is active any more."""
        if not self._healed.is_set():
            self._healed_at = time.monotonic()
            self._healed.set()

    def release_all(self) -> None:
        """The injector stopped (or stopped early): never leave the workload waiting."""
        for started in self._started:
            started.set()
        self.all_healed()


@dataclass(frozen=True)
class ToxicSettings:
    """Toxic attributes, from the deadlines they must beat."""

    payment_timeout_s: float
    lease_s: float

    def latency_ms(self, link: Link) -> int:
        if link is Link.ORDER_POSTGRES:
            return int(self.lease_s * 1250)  # a write slower than the lease: another replica may take over
        return int(self.payment_timeout_s * 2500)  # the reply comes after the order's deadline

    def toxic(self, link: Link, toxic: Toxic) -> tuple[dict[str, int], str]:
        """(attributes, stream)."""
        if toxic is Toxic.LATENCY:
            return {"latency": self.latency_ms(link), "jitter": 250}, "downstream"
        if toxic is Toxic.RESET_PEER:
            return {"timeout": 0}, "upstream"
        if toxic is Toxic.TIMEOUT:
            return {"timeout": 1500}, "upstream"
        return {"delay": 3000}, "downstream"


class Injector:
    def __init__(self, env: Environment, gate: Gate, toxics: ToxicSettings, clock: Callable[[], float],
                 say: Callable[[str], None]) -> None:
        self.env = env
        self.gate = gate
        self.toxics = toxics
        self.clock = clock
        self.say = say
        self.log: list[InjectedFault] = []

    async def run(self) -> list[InjectedFault]:
        try:
            async with Toxiproxy(self.env.toxiproxy_url) as api:
                await asyncio.gather(*(self._lane(api, lane) for lane in Lane))
                self.gate.all_healed()
                try:
                    await api.reset()
                except (TimeoutError, aiohttp.ClientError):  # the hang above, on the last removal
                    await self.env.restart_toxiproxy()
        finally:
            self.gate.release_all()
        return self.log

    async def _lane(self, api: Toxiproxy, lane: Lane) -> None:
        for event in (e for e in self.gate.events if e.lane is lane):
            await self.gate.due(event)
            record = InjectedFault(event.kind, lane.value, event.at_saga, started_s=self.clock())
            self.log.append(record)
            self.say(f"fault at saga {event.at_saga}: {event.kind}")
            try:
                if isinstance(event, NetworkFault):
                    await self._network(api, event, record)
                else:
                    await self._process(event, record)
            except Exception as exc:  # recorded and reported: a fault that did not happen is a finding
                record.error = f"{type(exc).__name__}: {exc}"
                self.say(f"fault {event.kind} failed: {record.error}")
            finally:
                self.gate.started(event)
                record.ended_s = self.clock()

    async def _network(self, api: Toxiproxy, event: NetworkFault, record: InjectedFault) -> None:
        proxy = self.env.proxies[event.link].name
        attributes, stream = self.toxics.toxic(event.link, event.toxic)
        name = f"chaos_{event.toxic}_{event.at_saga}"
        await api.add_toxic(proxy, name, event.toxic.value, attributes, stream)
        self.gate.started(event)
        began = time.monotonic()
        try:
            in_place = confirm.toxic_present(await api.toxics(proxy), name, event.toxic.value, stream, attributes)
            await asyncio.sleep(event.hold_s)
        finally:
            await self._remove(api, proxy, name, record)
            record.held_s = round(time.monotonic() - began, 2)
        healed = confirm.toxic_absent(await api.toxics(proxy), name)
        self._confirmed(record, in_place or healed)

    async def _remove(self, api: Toxiproxy, proxy: str, name: str, record: InjectedFault) -> None:
        """Remove the toxic; if toxiproxy hangs doing so, restart it with the same proxies.

        Removing a latency toxic can block toxiproxy's API for good when a link's destination stops
        reading (its RemoveToxic retries a 5 s write forever; Shopify/toxiproxy#558, still open in
        v2.12.0). A restart is the only way out: it cuts every proxied connection, so the fault
        ends harsher than scheduled, and the record says so.
        """
        try:
            await api.remove_toxic(proxy, name)
        except (TimeoutError, aiohttp.ClientError) as exc:
            record.note = (f"toxiproxy hung removing the toxic ({type(exc).__name__}; Shopify/toxiproxy#558): "
                           "restarted, cutting every proxied connection")
            self.say(f"fault {record.kind}: {record.note}")
            await self.env.restart_toxiproxy()
            await api.reconnect()

    def _confirmed(self, record: InjectedFault, reason: str) -> None:
        record.confirmed = not reason
        record.unconfirmed = reason
        if reason:
            self.say(f"fault {record.kind} NOT confirmed: {reason}")

    async def _process(self, event: ProcessFault, record: InjectedFault) -> None:
        name = event.target.value
        old_pid = self.env.pid(name)
        if old_pid is None:
            raise RuntimeError(f"{name} was not running when its fault was due")
        began = time.monotonic()
        if event.target is Target.POSTGRES:
            stop = asyncio.create_task(asyncio.to_thread(self.env.postgres.fast_stop))
            await asyncio.sleep(0)
            self.gate.started(event)
            await stop
            await asyncio.sleep(event.down_s)
        else:
            await self.env.kill(name)
            self.gate.started(event)
            await asyncio.sleep(event.down_s)
        gone = await asyncio.to_thread(confirm.process_gone, old_pid)
        record.held_s = round(time.monotonic() - began, 2)
        record.back_s = round(await self.env.start_again(name), 2)
        self._confirmed(record, gone or await self.env.serving_anew(name, old_pid))
