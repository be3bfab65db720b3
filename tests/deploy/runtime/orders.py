"""Placing orders from this host through the Services' cluster DNS names, and a steady bounded
stream of them (for the rollout and the pod kill), every reply counted."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from dataclasses import dataclass, field

from sagascope.cli.client import OrderClient, OrderResult, login, order_request
from tests.deploy.runtime.kube import Kube
from tools.chaos.workload import CUSTOMERS

OVER_LIMIT_MINOR = 150_000  # above the payment limit: declined, the reservation compensated


async def client(kube: Kube) -> OrderClient:
    token = await login(kube.service_address("identity", 50051), "alice", CUSTOMERS["alice"])
    return OrderClient(kube.service_address("order", 50052), token)


async def place(kube: Kube, amount_minor: int) -> OrderResult:
    orders = await client(kube)
    try:
        request = order_request("alice", f"k8s-{uuid.uuid4().hex[:12]}", amount_minor=amount_minor, quantity=1)
        sent = f"k8s-runtime-{uuid.uuid4().hex[:16]}"
        result = await orders.create_order(request, correlation_id=sent, timeout=30)
        return dataclasses.replace(result, correlation_id=result.correlation_id or sent)
    finally:
        await orders.close()


@dataclass
class StreamResult:
    replies: list[OrderResult] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    windows: list[tuple[float, float]] = field(default_factory=list)  # (sent, answered), time.monotonic()

    def in_flight_at(self, moment: float) -> int:
        return sum(1 for sent, answered in self.windows if sent <= moment <= answered)

    @property
    def failed(self) -> list[OrderResult]:
        return [r for r in self.replies if r.code.name != "OK"]

    def summary(self) -> str:
        codes: dict[str, int] = {}
        for r in self.replies:
            codes[r.code.name] = codes.get(r.code.name, 0) + 1
        return f"{len(self.replies)} CreateOrder, {len(self.failed)} failed, codes {codes}"


async def stream(kube: Kube, stop: asyncio.Event, workers: int = 3, per_second: float = 3.0,
                 channels: int = 4) -> StreamResult:
    """``workers`` clients each place one order at a time, together about ``per_second``, until
    ``stop`` is set; no retries, so every failure a client would see is counted."""
    result = StreamResult()
    token = await login(kube.service_address("identity", 50051), "alice", CUSTOMERS["alice"])
    target = kube.service_address("order", 50052)
    clients = [OrderClient(target, token) for _ in range(channels)]
    gap = workers / per_second

    async def worker(n: int) -> None:
        i = 0
        while not stop.is_set():
            began = time.monotonic()
            key = f"k8s-stream-{uuid.uuid4().hex[:12]}"
            result.keys.append(key)
            request = order_request("alice", key, amount_minor=1000 + n, quantity=1)
            sent = time.monotonic()
            reply = await clients[(n + i) % channels].create_order(request, timeout=30)
            result.windows.append((sent, time.monotonic()))
            result.replies.append(reply)
            i += 1
            await asyncio.sleep(max(0.0, gap - (time.monotonic() - began)))

    try:
        await asyncio.gather(*(worker(n) for n in range(workers)))
    finally:
        for c in clients:
            await c.close()
    return result
