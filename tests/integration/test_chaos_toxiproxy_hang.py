"""The chaos campaign survives toxiproxy's API hanging while a toxic is removed.

toxiproxy v2 can block its API for good removing a latency toxic (Shopify/toxiproxy#558): a 10,000-
saga campaign (seed 23, 16 in flight) died of it. The injector then restarts toxiproxy with the same
proxies. Here the real server's API is frozen (SIGSTOP) with a latency toxic in place, which is what
the campaign saw from outside: the DELETE never answers. The removal must end with toxiproxy running
anew, the proxy back on its port without the toxic, traffic flowing, and the record saying why.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sagascope.local.supervisor import Supervisor, free_port
from tools.chaos import toxiproxy
from tools.chaos.injector import Gate, InjectedFault, Injector, ToxicSettings
from tools.chaos.toxiproxy import Proxy, Toxiproxy, server_process

pytestmark = pytest.mark.timeout(300)


class Proxied:
    """What the injector needs of the campaign's environment for a removal: the restart."""

    def __init__(self, supervisor: Supervisor, url: str, proxy: Proxy) -> None:
        self.supervisor, self.toxiproxy_url, self.proxy = supervisor, url, proxy

    async def restart_toxiproxy(self) -> None:
        await toxiproxy.restart(self.supervisor, self.toxiproxy_url, [self.proxy])


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _round_trip(address: str) -> bytes:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"ping")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(4), timeout=10)
    writer.close()
    return data


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[Proxied]:
    try:
        binary = await asyncio.to_thread(toxiproxy.server_binary)
    except Exception as exc:  # no Go toolchain or module proxy: say so
        pytest.skip(f"toxiproxy cannot be built here: {exc}")
    echo = await asyncio.start_server(_echo, "127.0.0.1", free_port())
    upstream = f"127.0.0.1:{echo.sockets[0].getsockname()[1]}"
    port = free_port()
    supervisor = Supervisor(tmp_path)
    supervisor.add(server_process(binary, port, tmp_path / "toxiproxy.log"))
    await supervisor.start_one("toxiproxy", timeout=60)
    env = Proxied(supervisor, f"http://127.0.0.1:{port}", Proxy("payment", f"127.0.0.1:{free_port()}", upstream))
    async with Toxiproxy(env.toxiproxy_url) as api:
        await api.create_proxy(env.proxy)
    try:
        yield env
    finally:
        await supervisor.stop(grace=5)
        echo.close()


async def test_a_hung_removal_restarts_toxiproxy_with_its_proxies(proxied: Proxied) -> None:
    assert await _round_trip(proxied.proxy.listen) == b"ping"
    injector = Injector(proxied, Gate([]), ToxicSettings(1.0, 4.0), clock=lambda: 0.0,  # type: ignore[arg-type]
                        say=print)
    record = InjectedFault("latency order->payment", "network", 1)
    old_pid = proxied.supervisor.processes["toxiproxy"].pid
    assert old_pid is not None
    async with Toxiproxy(proxied.toxiproxy_url, timeout_s=2.0) as api:
        await api.add_toxic("payment", "chaos_latency_1", "latency", {"latency": 2500, "jitter": 0})
        os.kill(old_pid, signal.SIGSTOP)  # the API stops answering, as it did mid-campaign
        await injector._remove(api, "payment", "chaos_latency_1", record)
        assert "Shopify/toxiproxy#558" in record.note and "restarted" in record.note
        assert await api.toxics("payment") == []  # the reconnected client reads the new server
    new_pid = proxied.supervisor.processes["toxiproxy"].pid
    assert new_pid not in (None, old_pid)
    assert await _round_trip(proxied.proxy.listen) == b"ping"  # same listen port, no latency left


async def test_a_removal_that_answers_restarts_nothing(proxied: Proxied) -> None:
    injector = Injector(proxied, Gate([]), ToxicSettings(1.0, 4.0), clock=lambda: 0.0,  # type: ignore[arg-type]
                        say=print)
    record = InjectedFault("latency order->payment", "network", 1)
    pid = proxied.supervisor.processes["toxiproxy"].pid
    async with Toxiproxy(proxied.toxiproxy_url) as api:
        await api.add_toxic("payment", "chaos_latency_1", "latency", {"latency": 100, "jitter": 0})
        await injector._remove(api, "payment", "chaos_latency_1", record)
        assert await api.toxics("payment") == []
    assert record.note == "" and proxied.supervisor.processes["toxiproxy"].pid == pid
