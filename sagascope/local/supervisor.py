"""One process supervisor for everything sagascope runs locally: services and backends alike.

A :class:`ManagedProcess` is a command, its environment, a log file and how to tell it is
healthy (gRPC health, an HTTP URL, or an open TCP port). A :class:`Supervisor` starts them in
the order they were added — each one's ports checked free first, then started in its own
session and waited for — and stops them in reverse order: SIGTERM to the whole process group,
SIGKILL after a grace period. Signalling the group, not just the pid, reaches what a launcher
script forked (Elasticsearch's JVM). A failed or interrupted start stops what already runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from sagascope.common.health_probe import probe
from sagascope.common.tls import CLIENT_PREFIX, TlsSettings

HealthCheck = Callable[[], Awaitable[bool]]


# --- health checks -------------------------------------------------------------------------------


async def grpc_serving(target: str, timeout: float = 1.0, tls: TlsSettings | None = None) -> bool:
    """``grpc.health.v1.Health/Check`` for the whole server answers SERVING (over TLS when
    ``SAGASCOPE_TLS_*`` says so, as the CLI calls; ``tls`` when already read)."""
    try:
        return await probe(target, tls or TlsSettings.from_env(CLIENT_PREFIX), timeout)
    except grpc.aio.AioRpcError:
        return False


async def tcp_open(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _http_ok(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return 200 <= int(reply.status) < 300
    except (OSError, urllib.error.URLError):  # refused, reset, timed out, or a 4xx/5xx (HTTPError)
        return False


def grpc_health(target: str) -> HealthCheck:
    tls = TlsSettings.from_env(CLIENT_PREFIX)  # once, not on every poll
    return lambda: grpc_serving(target, tls=tls)


def tcp_health(host: str, port: int) -> HealthCheck:
    return lambda: tcp_open(host, port)


def http_health(url: str, timeout: float = 3.0) -> HealthCheck:
    """A 2xx from ``url``."""
    return lambda: asyncio.to_thread(_http_ok, url, timeout)


# --- ports ---------------------------------------------------------------------------------------


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nobody listens on, chosen *below* the kernel's ephemeral range.

    Binding port 0 would hand back an ephemeral port, and between closing it and the child's own
    bind an outgoing connection (a client, a scrape, an exporter) may take it as its source port —
    a busy benchmark hit exactly that. The kernel never picks a port outside the ephemeral range
    on its own, so only another explicit bind can race us there; random choice plus the set of
    ports this process already handed out keeps concurrent stacks apart.
    """
    span = _ephemeral_range() or (32768, 60999)
    low, high = (20000, span[0] - 1) if span[0] > 21000 else (span[1] + 1, 65535)
    for _ in range(200):
        port = random.randint(low, high)
        if port not in _handed_out and port_bindable(port, reuse_addr=False):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free loopback port in {low}-{high} after 200 tries")


class PortInUseError(RuntimeError):
    """A process's fixed port is taken, so starting it would die with a bare bind error."""


def port_bindable(port: int, host: str = "127.0.0.1", reuse_addr: bool = True) -> bool:
    """Whether a listener could bind ``host:port`` now, under the servers' own rule (SO_REUSEADDR,
    no SO_REUSEPORT): a port in TIME_WAIT is fine; a listener or a live connection using it is not.
    ``reuse_addr=False``: the port must be entirely unused (TIME_WAIT counts as used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if reuse_addr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int] | None:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        return None
    return int(low), int(high)


async def wait_until_bindable(name: str, ports: Mapping[str, int], timeout: float = 10.0) -> None:
    """Wait (briefly) for each of a process's fixed ports to be free, else say who to blame.

    The default gRPC ports (5005x) lie inside Linux's ephemeral range, so the kernel can hand one
    to an outgoing connection (a scrape, an exporter) and the bind fails although no server runs
    there. A short wait covers a closing connection; the message names the lasting remedies.
    """
    deadline = time.monotonic() + timeout
    busy = dict(ports)
    while True:
        busy = {var: port for var, port in busy.items() if not port_bindable(port)}
        if not busy or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.25)
    if not busy:
        return
    lines = [f"{name} cannot start: 127.0.0.1:{port} ({var}) is already in use." for var, port in busy.items()]
    lines.append("Another sagascope stack may be running (stop it), or set the variable to a free port.")
    span = _ephemeral_range()
    ephemeral = sorted(p for p in busy.values() if span and span[0] <= p <= span[1])
    if span and ephemeral:
        listed = ",".join(str(p) for p in ephemeral)
        lines.append(
            f"Port(s) {listed} lie in the kernel's ephemeral range {span[0]}-{span[1]}, so an outgoing "
            f"connection may hold one; reserve them: sysctl -w net.ipv4.ip_local_reserved_ports={listed}"
        )
    raise PortInUseError("\n".join(lines))


# --- one process ---------------------------------------------------------------------------------


@dataclass
class ManagedProcess:
    """A command run in its own session (so its process group is ours to signal), logging to a file.

    ``command`` and ``env`` may be changed before it starts (the benchmarks wrap the order
    service in a profiler). ``user`` runs it as that account (needs root): Elasticsearch refuses
    to run as root.
    """

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    health: HealthCheck | None = None  # None: started is healthy
    # The ports it will listen on, by the variable (or flag) that sets each; checked free first.
    listens_on: Mapping[str, int] = field(default_factory=dict)
    cwd: Path | None = None
    user: str | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd or cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: Ctrl-C in the terminal reaches the supervisor only, which stops
                # the children in order; and the pid is the process group to signal.
                start_new_session=True,
                user=self.user,
                group=self.user,
                extra_groups=[] if self.user else None,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def signal(self, sig: int) -> None:
        """Signal the whole process group (also what the command forked), if any of it is left."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if it still runs after ``timeout`` seconds."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


async def run_once(
    name: str, command: list[str], env: Mapping[str, str], log_path: Path, timeout: float = 120.0
) -> None:
    """A one-shot job (e.g. the Elasticsearch template set-up): must exit 0 within ``timeout``."""
    await asyncio.to_thread(_run_once, name, command, env, log_path, timeout)


def _run_once(name: str, command: list[str], env: Mapping[str, str], log_path: Path, timeout: float) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        try:
            code: int | None = subprocess.call(
                command,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            code = None
    if code != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{name} failed (exit {code}); its log ends with:\n{tail}")


# --- the supervisor ------------------------------------------------------------------------------


class Supervisor:
    """Starts processes in the order added, stops them in reverse; ``say`` reports progress."""

    def __init__(self, cwd: Path | None = None, say: Callable[[str], None] | None = None) -> None:
        self.cwd = cwd
        self.processes: dict[str, ManagedProcess] = {}
        self._say = say or (lambda message: None)

    def add(self, process: ManagedProcess) -> ManagedProcess:
        if process.name in self.processes:
            raise ValueError(f"{process.name} is already supervised")
        self.processes[process.name] = process
        return process

    async def start(self, names: Iterable[str] | None = None, timeout: float = 60.0) -> None:
        """Start each (default: all, in the order added) and wait until healthy. If one fails —
        or the caller is interrupted — every process started here is stopped before re-raising."""
        started: list[str] = []
        try:
            for name in list(self.processes) if names is None else list(names):
                started.append(name)
                await self.start_one(name, timeout)
        except BaseException:  # CancelledError and KeyboardInterrupt too: never leave orphans
            await self.stop(started)
            raise

    async def start_one(self, name: str, timeout: float = 60.0) -> None:
        proc = self.processes[name]
        if proc.running:
            return
        await wait_until_bindable(name, proc.listens_on)
        proc.start(self.cwd)
        deadline = time.monotonic() + timeout
        while True:
            if not proc.running:
                raise RuntimeError(f"{name} exited during start-up; its log ends with:\n{proc.log_tail()}")
            if proc.health is None or await proc.health():
                self._say(f"{name} is up (pid {proc.pid}, log {proc.log_path})")
                return
            if time.monotonic() >= deadline:
                await self.stop_one(name)
                raise TimeoutError(
                    f"{name} was not healthy within {timeout:.0f}s; its log ends with:\n{proc.log_tail()}"
                )
            await asyncio.sleep(0.2)

    def kill(self, name: str) -> None:
        """SIGKILL the process group: no drain, no clean-up — what a crash looks like."""
        proc = self.processes[name]
        proc.signal(signal.SIGKILL)
        proc.wait(10)

    async def stop_one(self, name: str, grace: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; then SIGKILL whatever is left of the group."""
        proc = self.processes[name]
        if proc.process is None:
            return
        if proc.running:
            proc.signal(signal.SIGTERM)
            if await asyncio.to_thread(proc.wait, grace) is None:
                self._say(f"{name} (pid {proc.pid}) ignored SIGTERM for {grace:.0f}s; SIGKILL")
                proc.signal(signal.SIGKILL)
                await asyncio.to_thread(proc.wait, 5)
        proc.signal(signal.SIGKILL)  # stragglers the leader forked and left behind

    async def stop(self, names: Iterable[str] | None = None, grace: float = 15.0) -> None:
        """Stop each (default: all) in reverse start order — callers before what they call."""
        chosen = set(self.processes if names is None else names)
        for name in reversed(list(self.processes)):
            if name in chosen:
                await self.stop_one(name, grace)

    async def restart(self, name: str, timeout: float = 60.0, grace: float = 15.0) -> None:
        await self.stop_one(name, grace)
        await self.start_one(name, timeout)


def signalled() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (handlers installed now): what a foreground command that
    runs processes waits for before it stops them."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
