"""Run the three services (and the embedded MongoDB-wire server) as local processes.

Used by ``sagascope up`` / ``sagascope demo`` and by the process-level tests,
which need to SIGKILL and restart one service. Each process logs to
``<state_dir>/logs/<name>.log``; health is checked over ``grpc.health.v1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sagascope.common.config import env_int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortInUseError(RuntimeError):
    """A service's fixed port is taken, so starting it would die with gRPC's bare bind error."""


def port_bindable(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind ``host:port`` now, under the servers' own rule (SO_REUSEADDR,
    no SO_REUSEPORT): a port in TIME_WAIT is fine; a listener or a live connection using it is not."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
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


async def wait_until_bindable(service: str, ports: Mapping[str, int], timeout: float = 10.0) -> None:
    """Wait (briefly) for each of a service's fixed ports to be free, else say who to blame.

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
    lines = [f"{service} cannot start: 127.0.0.1:{port} ({var}) is already in use." for var, port in busy.items()]
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


@dataclass(frozen=True)
class Ports:
    identity_grpc: int = 50051
    identity_http: int = 8081
    identity_metrics: int = 9101
    order_grpc: int = 50052
    order_metrics: int = 9102
    payment_grpc: int = 50053
    payment_metrics: int = 9103
    mongo: int = 27017

    @classmethod
    def from_env(cls) -> Ports:
        """The documented defaults, overridden by the services' own *_PORT variables (a malformed one
        is a ConfigError naming it)."""
        return cls(
            identity_grpc=env_int("IDENTITY_GRPC_PORT", 50051),
            identity_http=env_int("IDENTITY_HTTP_PORT", 8081),
            identity_metrics=env_int("IDENTITY_METRICS_PORT", 9101),
            order_grpc=env_int("ORDER_GRPC_PORT", 50052),
            order_metrics=env_int("ORDER_METRICS_PORT", 9102),
            payment_grpc=env_int("PAYMENT_GRPC_PORT", 50053),
            payment_metrics=env_int("PAYMENT_METRICS_PORT", 9103),
            mongo=env_int("SAGASCOPE_MONGO_PORT", 27017),
        )

    @classmethod
    def free(cls) -> Ports:
        """Ephemeral ports for tests, so parallel runs and a running demo never collide."""
        return cls(*(free_port() for _ in range(8)))


@dataclass
class ManagedProcess:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    health_target: str | None  # gRPC address to health-check, or None (TCP port check)
    tcp_port: int | None = None
    # The ports it will listen on, by the variable that sets each (checked free before start).
    listens_on: Mapping[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            cwd=cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal goes to us; we stop children in order
        )
        log.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


@dataclass
class LocalStack:
    """nx-27017 + identity + payment + order, started in dependency order."""

    state_dir: Path
    ports: Ports = field(default_factory=Ports)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    database_url: str | None = None
    mongo_url: str | None = None  # an external MongoDB: then no nx-27017 is started
    cwd: Path = field(default_factory=Path.cwd)
    # Extra order replicas (ports chosen free): the saga log's leases make them safe together.
    order_replicas: int = 1
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    order_ports: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state_dir = self.state_dir.resolve()
        python = sys.executable
        base_env = {**os.environ, **self.extra_env, "PYTHONUNBUFFERED": "1"}
        p = self.ports
        mongo_url = self.mongo_url or f"mongodb://127.0.0.1:{p.mongo}"
        service_env = {
            "IDENTITY_GRPC_PORT": str(p.identity_grpc),
            "IDENTITY_HTTP_PORT": str(p.identity_http),
            "IDENTITY_METRICS_PORT": str(p.identity_metrics),
            "IDENTITY_KEYS_DIR": os.environ.get("IDENTITY_KEYS_DIR", str(self.state_dir / "identity" / "keys")),
            "PAYMENT_GRPC_PORT": str(p.payment_grpc),
            "PAYMENT_METRICS_PORT": str(p.payment_metrics),
            "PAYMENT_MONGO_URL": mongo_url,
            "ORDER_GRPC_PORT": str(p.order_grpc),
            "ORDER_METRICS_PORT": str(p.order_metrics),
            "ORDER_PAYMENT_TARGET": f"127.0.0.1:{p.payment_grpc}",
            "ORDER_IDENTITY_TARGET": f"127.0.0.1:{p.identity_grpc}",
            "ORDER_DATABASE_URL": self.database_url
            or os.environ.get("ORDER_DATABASE_URL", f"sqlite:///{self.state_dir / 'order' / 'orders.db'}"),
        }
        jwks = f"http://127.0.0.1:{p.identity_http}/.well-known/jwks.json"
        service_env.update({"ORDER_JWKS_URL": jwks, "PAYMENT_JWKS_URL": jwks})
        # Explicit settings from the caller win over the stack's wiring.
        env = {**base_env, **service_env, **self.extra_env}
        logs = self.state_dir / "logs"
        if self.mongo_url is None:
            mongo_dir = self.state_dir / "payment"
            mongo_dir.mkdir(parents=True, exist_ok=True)
            self.processes["mongo"] = ManagedProcess(
                "mongo",
                [
                    str(Path(python).with_name("nx-27017")),
                    "--host",
                    "127.0.0.1",
                    "-p",
                    str(p.mongo),
                    "--db",
                    str(mongo_dir / "payments.db"),
                    "--log-file",
                    str(logs / "nx-27017.server.log"),
                    "--pid-file",
                    str(mongo_dir / "nx-27017.pid"),
                ],
                dict(base_env),
                logs / "nx-27017.log",
                None,
                tcp_port=p.mongo,
                listens_on={"SAGASCOPE_MONGO_PORT": p.mongo},
            )
        for name, module, port in (
            ("identity", "sagascope.identity", p.identity_grpc),
            ("payment", "sagascope.payment", p.payment_grpc),
            ("order", "sagascope.order", p.order_grpc),
        ):
            listens_on = {
                var: int(env[var])
                for var in (f"{name.upper()}_{kind}_PORT" for kind in ("GRPC", "HTTP", "METRICS"))
                if var in env
            }
            self.processes[name] = ManagedProcess(
                name,
                [python, "-m", module],
                dict(env),
                logs / f"{name}.log",
                f"127.0.0.1:{port}",
                listens_on=listens_on,
            )
        self.order_ports = [p.order_grpc]
        for replica in range(2, self.order_replicas + 1):
            grpc_port, metrics_port = free_port(), free_port()
            replica_env = {**env, "ORDER_GRPC_PORT": str(grpc_port), "ORDER_METRICS_PORT": str(metrics_port)}
            self.processes[f"order-{replica}"] = ManagedProcess(
                f"order-{replica}",
                [python, "-m", "sagascope.order"],
                replica_env,
                logs / f"order-{replica}.log",
                f"127.0.0.1:{grpc_port}",
                listens_on={"ORDER_GRPC_PORT": grpc_port, "ORDER_METRICS_PORT": metrics_port},
            )
            self.order_ports.append(grpc_port)

    @property
    def order_target(self) -> str:
        """One address, or all replicas as an ``ipv4:`` list (clients balance round robin)."""
        if len(self.order_ports) > 1:
            return "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in self.order_ports)
        return f"127.0.0.1:{self.ports.order_grpc}"

    @property
    def identity_target(self) -> str:
        return f"127.0.0.1:{self.ports.identity_grpc}"

    async def start(self, timeout: float = 60.0) -> None:
        for name in self.processes:
            await self.start_one(name, timeout)

    async def start_one(self, name: str, timeout: float = 60.0) -> None:
        proc = self.processes[name]
        await wait_until_bindable(name, proc.listens_on)
        proc.start(self.cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.running:
                raise RuntimeError(f"{name} exited during start-up; its log ends with:\n{proc.log_tail()}")
            if await self._healthy(proc):
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{name} was not healthy within {timeout:.0f}s; its log ends with:\n{proc.log_tail()}")

    async def _healthy(self, proc: ManagedProcess) -> bool:
        if proc.health_target is None:
            assert proc.tcp_port is not None
            return await tcp_open("127.0.0.1", proc.tcp_port)
        return await grpc_serving(proc.health_target)

    def kill(self, name: str) -> None:
        """SIGKILL: no drain, no clean-up — what a crash looks like."""
        proc = self.processes[name]
        proc.signal(signal.SIGKILL)
        proc.wait(10)

    async def stop(self, grace: float = 15.0) -> None:
        """SIGTERM in reverse start order (callers first), so in-flight sagas drain."""
        for proc in reversed(list(self.processes.values())):
            proc.signal(signal.SIGTERM)
            if proc.wait(grace) is None:
                proc.signal(signal.SIGKILL)
                proc.wait(5)


async def tcp_open(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def grpc_serving(target: str, timeout: float = 1.0) -> bool:
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.aio.AioRpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
