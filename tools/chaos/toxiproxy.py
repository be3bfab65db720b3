"""A small typed client for toxiproxy's HTTP API (github.com/Shopify/toxiproxy, v2), and its server
as a supervised process.

The PyPI clients for it are unmaintained (last releases years ago); the API is five calls:
create a proxy, add a toxic, list them, remove one, reset everything.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from sagascope.local.supervisor import ManagedProcess, Supervisor, http_health

ROOT = Path(__file__).resolve().parents[2]
MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"


class ToxiproxyError(RuntimeError):
    """The API refused a call; the message carries its answer."""


def pinned_version() -> str:
    """TOXIPROXY_VERSION from the environment, else from .env (where every version is pinned)."""
    version = os.environ.get("TOXIPROXY_VERSION", "")
    if not version:
        for line in (ROOT / ".env").read_text().splitlines():
            if line.startswith("TOXIPROXY_VERSION="):
                version = line.partition("=")[2].strip()
    if not version:
        raise ToxiproxyError("TOXIPROXY_VERSION is not set in .env")
    return version


def server_binary() -> Path:
    """The cached toxiproxy-server (built once from the Go module proxy by scripts/backends/go_tool.sh)."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts/backends/go_tool.sh"), "toxiproxy-server", MODULE, pinned_version()],
        check=True, capture_output=True, text=True, timeout=900,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def server_process(binary: Path, port: int, log_path: Path) -> ManagedProcess:
    return ManagedProcess(
        "toxiproxy",
        [str(binary), "-host", "127.0.0.1", "-port", str(port)],
        dict(os.environ),
        log_path,
        http_health(f"http://127.0.0.1:{port}/version"),
        listens_on={"toxiproxy -port": port},
    )


@dataclass(frozen=True)
class Proxy:
    name: str
    listen: str  # host:port clients connect to
    upstream: str  # host:port it forwards to


class Toxiproxy:
    """``async with Toxiproxy(url) as api``: proxies and toxics over HTTP."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Toxiproxy:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def reconnect(self) -> None:
        """A fresh session after the server restarted (its pooled connections are dead)."""
        await self.__aexit__()
        await self.__aenter__()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        assert self._session is not None, "use `async with Toxiproxy(...)`"
        async with self._session.request(method, f"{self.url}{path}", json=body) as reply:
            text = await reply.text()
            if reply.status >= 300:
                raise ToxiproxyError(f"{method} {path}: HTTP {reply.status}: {text[:300]}")
            return await reply.json(content_type=None) if text else None

    async def create_proxy(self, proxy: Proxy) -> None:
        await self._call("POST", "/proxies", {"name": proxy.name, "listen": proxy.listen,
                                              "upstream": proxy.upstream, "enabled": True})

    async def add_toxic(
        self, proxy: str, name: str, toxic_type: str, attributes: dict[str, int], stream: str = "downstream"
    ) -> None:
        """``stream``: downstream (upstream server -> client) or upstream (client -> server)."""
        await self._call("POST", f"/proxies/{proxy}/toxics", {
            "name": name, "type": toxic_type, "stream": stream, "toxicity": 1.0, "attributes": attributes,
        })

    async def toxics(self, proxy: str) -> list[dict[str, Any]]:
        """The toxics toxiproxy has in place on ``proxy`` (what the campaign reads back to confirm)."""
        listed = await self._call("GET", f"/proxies/{proxy}/toxics")
        return list(listed or [])

    async def remove_toxic(self, proxy: str, name: str) -> None:
        await self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    async def reset(self) -> None:
        """Every proxy enabled, every toxic removed."""
        await self._call("POST", "/reset")


async def restart(supervisor: Supervisor, url: str, proxies: Iterable[Proxy]) -> None:
    """SIGKILL the supervised toxiproxy, start it again and create ``proxies`` as they were (same
    listen ports), so the services reconnect where they were."""
    await asyncio.to_thread(supervisor.kill, "toxiproxy")
    await supervisor.start_one("toxiproxy", timeout=60)
    await create_proxies(url, proxies)


async def create_proxies(url: str, proxies: Iterable[Proxy]) -> None:
    async with Toxiproxy(url) as api:
        for proxy in proxies:
            await api.create_proxy(proxy)
