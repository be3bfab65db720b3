"""The fault schedule: which fault, at which point of the workload, for how long — from a seed.

Faults run in two lanes at once: the network lane (toxics on the three proxied links) and the
process lane (SIGKILL of a service, or a PostgreSQL restart). Within a lane events run one after
another. An event is due once the workload has *issued* ``at_saga`` sagas, and the workload does
not issue saga ``at_saga`` before the event started, so every fault meets live traffic however
fast or slow the machine is. The same seed and saga count give the same schedule.

The lanes usually lag behind the workload, so faults follow each other closely until the last one.
The clean tail (the last 15 % of the sagas) therefore waits until every fault has healed and one
breaker reset plus one lease has passed: it is the campaign's guaranteed fault-free window, where
goodput is judged (tools.chaos.goodput), whatever the machine's speed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


class Link(StrEnum):
    """A proxied connection between two processes."""

    ORDER_PAYMENT = "order->payment"
    ORDER_POSTGRES = "order->postgres"
    PAYMENT_MONGO = "payment->mongo"


class Toxic(StrEnum):
    """toxiproxy toxic types used here."""

    LATENCY = "latency"  # beyond the caller's deadline
    RESET_PEER = "reset_peer"  # TCP RST
    TIMEOUT = "timeout"  # data stops, the connection closes after a while
    SLOW_CLOSE = "slow_close"  # the close is delayed


class Target(StrEnum):
    """A process the campaign kills (supervisor names); POSTGRES is restarted (fast stop, start)."""

    ORDER = "order"
    ORDER_2 = "order-2"
    PAYMENT = "payment"
    IDENTITY = "identity"
    MONGO = "mongo"
    POSTGRES = "postgres"


class Lane(StrEnum):
    NETWORK = "network"
    PROCESS = "process"


@dataclass(frozen=True)
class NetworkFault:
    link: Link
    toxic: Toxic
    at_saga: int
    hold_s: float  # how long the toxic stays

    lane = Lane.NETWORK

    @property
    def kind(self) -> str:
        return f"{self.toxic} {self.link}"


@dataclass(frozen=True)
class ProcessFault:
    target: Target
    at_saga: int
    down_s: float  # how long it stays down before the restart

    lane = Lane.PROCESS

    @property
    def kind(self) -> str:
        return "restart postgres" if self.target is Target.POSTGRES else f"SIGKILL {self.target}"


FaultEvent = NetworkFault | ProcessFault

NETWORK_KINDS: tuple[tuple[Link, Toxic], ...] = tuple((link, toxic) for link in Link for toxic in Toxic)
PROCESS_KINDS: tuple[Target, ...] = tuple(Target)
SAGAS_PER_ROUND = 1000  # a campaign this long repeats every fault kind once more
WINDOW = (0.03, 0.85)  # faults start within this share of the workload; the tail runs clean


def clean_tail_from(sagas: int) -> int:
    """The first saga of the clean tail: no fault is scheduled at or after it, and the workload
    issues it only once every fault has healed and settled (:class:`tools.chaos.injector.Gate`)."""
    return max(2, round(sagas * WINDOW[1]))


def all_kinds() -> list[str]:
    """Every fault kind a schedule contains at least once."""
    network = [NetworkFault(link, toxic, 0, 0.0).kind for link, toxic in NETWORK_KINDS]
    return network + [ProcessFault(target, 0, 0.0).kind for target in PROCESS_KINDS]


def rounds_for(sagas: int) -> int:
    return max(1, sagas // SAGAS_PER_ROUND)


def build_schedule(seed: int, sagas: int, rounds: int | None = None) -> list[FaultEvent]:
    """Every fault kind ``rounds`` times (default: one round per 1000 sagas), shuffled per lane and
    spread over the workload's window with jitter; sorted by ``at_saga``."""
    if sagas < 1:
        raise ValueError("a campaign needs at least one saga")
    rng = random.Random(f"chaos-schedule:{seed}")
    rounds = rounds or rounds_for(sagas)
    network = list(NETWORK_KINDS) * rounds
    process = list(PROCESS_KINDS) * rounds
    rng.shuffle(network)
    rng.shuffle(process)
    start, end = max(1, round(sagas * WINDOW[0])), clean_tail_from(sagas)
    end = max(end, start + 1)

    def positions(count: int) -> list[int]:
        # One slot per event, evenly; the event lands somewhere inside the middle of its slot.
        width = (end - start) / count
        return [start + int(width * (i + rng.uniform(0.2, 0.8))) for i in range(count)]

    events: list[FaultEvent] = [
        NetworkFault(link, toxic, at, round(rng.uniform(1.5, 3.5), 2))
        for (link, toxic), at in zip(network, positions(len(network)), strict=True)
    ]
    events += [
        ProcessFault(target, at, round(rng.uniform(0.5, 3.0), 2))
        for target, at in zip(process, positions(len(process)), strict=True)
    ]
    return sorted(events, key=lambda event: (event.at_saga, event.lane))
