"""Everything the campaign runs, as real processes on ephemeral loopback ports, under one supervisor:

    postgres (a throwaway cluster, run as the postgres user)   toxiproxy
    nx-27017 (mongo)  identity  payment  order  order-2        (sagascope.local.services.LocalStack)

or, with ``mongo="ferretdb"``, FerretDB as ``mongo`` on a second throwaway cluster of its own
(``ferretdb-postgres``), so a PostgreSQL restart still hurts the orders only, as with nx-27017.

The order replicas reach payment and PostgreSQL, and payment reaches nx-27017, only through
toxiproxy, so the campaign can break those links from outside. The auditor reads both databases
directly, around the proxies. Nothing here binds a fixed topology port.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sagascope.local.services import LocalStack, Ports
from sagascope.local.supervisor import HealthCheck, ManagedProcess, Supervisor, free_port, tcp_health
from sagascope.local.topology import address
from tests.support import ferretdb
from tests.support import postgres as pg_support
from tools.chaos import confirm, toxiproxy
from tools.chaos.schedule import Link
from tools.chaos.toxiproxy import Proxy, server_process

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "sagascope"
FERRETDB_DATABASE = "ferretdb"
OTLP_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                  "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")


@dataclass(frozen=True)
class ServiceTuning:
    """Settings the campaign shortens so recovery fits in a run (all real service settings)."""

    lease_s: float = 4.0
    recovery_interval_s: float = 0.5
    payment_timeout_s: float = 1.0
    breaker_reset_s: float = 2.0
    fault_latency_ms: int = 1500
    telemetry: bool = True

    @property
    def settle_s(self) -> float:
        """After a heal, how long until nothing should refuse any more: one breaker reset (the breaker
        may have opened at the very end of the fault) plus one saga lease (a killed replica's leases)."""
        return self.breaker_reset_s + self.lease_s

    def environment(self) -> dict[str, str]:
        return {
            "SAGASCOPE_ENV": "development",
            "ORDER_SAGA_LEASE_SECONDS": str(self.lease_s),
            "ORDER_RECOVERY_INTERVAL_SECONDS": str(self.recovery_interval_s),
            "ORDER_PAYMENT_TIMEOUT_SECONDS": str(self.payment_timeout_s),
            "ORDER_BREAKER_RESET_SECONDS": str(self.breaker_reset_s),
            "SAGASCOPE_FAULTS_ENABLED": "true",
            "SAGASCOPE_FAULT_LATENCY_MS": str(self.fault_latency_ms),
            "IDENTITY_TOKEN_TTL_SECONDS": "7200",  # the campaign's clients log in once
            "SAGASCOPE_TELEMETRY": "on" if self.telemetry else "off",
        }


def _pg_isready(bin_dir: Path, port: int) -> bool:
    command = [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-d", "postgres", "-U", "postgres"]
    return subprocess.run(command, capture_output=True, timeout=10).returncode == 0


class Postgres:
    """A throwaway cluster whose postmaster is a supervised process, so it can be restarted."""

    def __init__(self, logs: Path, name: str = "postgres") -> None:
        reason = pg_support.unavailable_reason()
        bin_dir = pg_support.find_bin_dir()
        if reason or bin_dir is None:
            raise RuntimeError(f"the chaos campaign needs PostgreSQL: {reason}")
        self.bin_dir = bin_dir
        # Under /tmp, not the repository: the postgres user must be able to reach its folder.
        self.root = Path(tempfile.mkdtemp(prefix="sagascope-chaos-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        as_root = os.geteuid() == 0
        if as_root:
            shutil.chown(self.root, pg_support.RUN_AS, pg_support.RUN_AS)
        self.user = pg_support.RUN_AS if as_root else None
        options = ["-c", "listen_addresses=127.0.0.1", "-p", str(self.port), "-k", str(self.root),
                   "-c", "fsync=off", "-c", "max_connections=300"]
        health: HealthCheck = lambda: asyncio.to_thread(_pg_isready, self.bin_dir, self.port)  # noqa: E731
        self.process = ManagedProcess(
            name, [str(bin_dir / "postgres"), "-D", str(self.data), *options],
            {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
            logs / f"{name}.log", health, listens_on={"postgres -p": self.port}, cwd=self.root, user=self.user,
        )

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> None:
        argv = list(command)
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)

    def initdb(self) -> None:
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--no-sync")

    def createdb(self, database: str = DATABASE) -> None:
        self._run(str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  database)

    def fast_stop(self, timeout_s: float = 30.0) -> None:
        """SIGINT to the postmaster: PostgreSQL's fast shutdown (clients cut, a clean checkpoint)."""
        proc = self.process.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        if self.process.wait(timeout_s) is None:
            self.process.signal(signal.SIGKILL)
            self.process.wait(10)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class Environment:
    """Build with :meth:`start`, tear down with :meth:`stop`; :meth:`kill`, :meth:`start_again` and
    ``postgres.fast_stop`` are the process faults."""

    def __init__(self, state_dir: Path, tuning: ServiceTuning, toxiproxy_bin: Path,
                 say: Callable[[str], None], mongo: str = "nx-27017") -> None:
        shutil.rmtree(state_dir, ignore_errors=True)
        state_dir.mkdir(parents=True)
        self.state_dir = state_dir.resolve()
        self.logs = self.state_dir / "logs"
        self.tuning = tuning
        self.say = say
        self.supervisor = Supervisor(ROOT, say)
        self.postgres = Postgres(self.logs)
        toxiproxy_port = free_port()
        self.toxiproxy_url = f"http://127.0.0.1:{toxiproxy_port}"
        self.supervisor.add(self.postgres.process)
        self.supervisor.add(server_process(toxiproxy_bin, toxiproxy_port, self.logs / "toxiproxy.log"))
        self.ports = Ports.free()
        self.ferretdb_postgres: Postgres | None = None
        if mongo == "ferretdb":
            self.ferretdb_postgres = Postgres(self.logs, name="ferretdb-postgres")
            self.supervisor.add(self.ferretdb_postgres.process)
            self.supervisor.add(ManagedProcess(
                "mongo", ferretdb.command(self.ports.mongo, self.ferretdb_postgres.url(FERRETDB_DATABASE),
                                          self.state_dir / "ferretdb"),
                {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, self.logs / "ferretdb.log",
                tcp_health("127.0.0.1", self.ports.mongo), listens_on={"SAGASCOPE_MONGO_PORT": self.ports.mongo},
            ))
        elif mongo != "nx-27017":
            raise ValueError(f"mongo must be nx-27017 or ferretdb, not {mongo!r}")
        self.proxies = {
            Link.ORDER_PAYMENT: Proxy("payment", address(free_port()), address(self.ports.payment_grpc)),
            Link.ORDER_POSTGRES: Proxy("postgres", address(free_port()), address(self.postgres.port)),
            Link.PAYMENT_MONGO: Proxy("mongo", address(free_port()), address(self.ports.mongo)),
        }
        for name in OTLP_VARIABLES:  # never export to a collector that may or may not be running
            os.environ.pop(name, None)
        proxied_pg = f"postgresql://postgres@{self.proxies[Link.ORDER_POSTGRES].listen}/{DATABASE}"
        self.stack = LocalStack(
            self.state_dir / "stack",
            self.ports,
            extra_env={
                **tuning.environment(),
                "SAGASCOPE_TELEMETRY_DIR": str(self.state_dir / "telemetry"),
                "ORDER_PAYMENT_TARGET": self.proxies[Link.ORDER_PAYMENT].listen,
                "PAYMENT_MONGO_URL": f"mongodb://{self.proxies[Link.PAYMENT_MONGO].listen}/?directConnection=true",
            },
            database_url=proxied_pg,
            # FerretDB is supervised above; a mongo_url tells the stack not to start nx-27017.
            mongo_url=self.mongo_url if self.ferretdb_postgres else None,
            cwd=ROOT,
            order_replicas=2,
            supervisor=self.supervisor,
        )

    @property
    def database_url(self) -> str:
        """PostgreSQL directly (the auditor's way in), not through the proxy."""
        return self.postgres.url()

    @property
    def mongo_url(self) -> str:
        return f"mongodb://127.0.0.1:{self.ports.mongo}/?directConnection=true"

    @property
    def service_names(self) -> list[str]:
        return list(self.stack.names)

    async def start(self) -> None:
        await asyncio.to_thread(self.postgres.initdb)
        await self.supervisor.start(["postgres", "toxiproxy"], timeout=90)
        await asyncio.to_thread(self.postgres.createdb)
        if self.ferretdb_postgres is not None:
            (self.state_dir / "ferretdb").mkdir(exist_ok=True)
            await asyncio.to_thread(self.ferretdb_postgres.initdb)
            await self.supervisor.start(["ferretdb-postgres"], timeout=90)
            await asyncio.to_thread(self.ferretdb_postgres.createdb, FERRETDB_DATABASE)
            await self.supervisor.start(["mongo"], timeout=60)
        await toxiproxy.create_proxies(self.toxiproxy_url, self.proxies.values())
        await self.stack.start(timeout=120)

    def pid(self, name: str) -> int | None:
        """The pid of ``name`` if it runs now (the process-group leader the supervisor started)."""
        proc = self.supervisor.processes[name]
        return proc.pid if proc.running else None

    async def serving_anew(self, name: str, old_pid: int) -> str:
        """"" when ``name`` runs under a new pid that owns its ports and passes its health check
        now; else why not (tools.chaos.confirm)."""
        proc = self.supervisor.processes[name]
        reason = await asyncio.to_thread(confirm.replaced_and_serving, old_pid, self.pid(name),
                                         proc.listens_on.values())
        if not reason and proc.health is not None and not await proc.health():
            reason = f"new pid {proc.pid} does not pass its health check"
        return reason

    async def kill(self, name: str) -> None:
        """SIGKILL the process group: what a crash looks like."""
        await asyncio.to_thread(self.supervisor.kill, name)

    async def start_again(self, name: str, budget_s: float = 180.0) -> float:
        """Start ``name`` until it is healthy (a dependency may be down at that moment); seconds taken."""
        started = time.monotonic()
        if name == "mongo":  # nx-27017 refuses to start while its pid file names a live process
            (self.state_dir / "stack" / "payment" / "nx-27017.pid").unlink(missing_ok=True)
        while True:
            try:
                await self.supervisor.start_one(name, timeout=60)
                return time.monotonic() - started
            except (RuntimeError, TimeoutError) as exc:
                if time.monotonic() - started > budget_s:
                    raise RuntimeError(f"{name} did not come back within {budget_s:.0f}s: {exc}") from exc
                self.say(f"{name} did not start yet ({str(exc).splitlines()[0]}); retrying")
                await asyncio.sleep(1.0)

    async def restart_toxiproxy(self) -> None:
        await toxiproxy.restart(self.supervisor, self.toxiproxy_url, self.proxies.values())

    async def ensure_running(self) -> list[str]:
        """Start whatever is not running (should be nothing once the schedule is done); their names."""
        restarted = []
        for name, proc in self.supervisor.processes.items():
            if not proc.running:
                await self.start_again(name)
                restarted.append(name)
        return restarted

    async def stop(self) -> None:
        databases = [self.postgres, *([self.ferretdb_postgres] if self.ferretdb_postgres else [])]
        try:
            extra = ["mongo"] if self.ferretdb_postgres else []
            await self.supervisor.stop([*self.stack.names, *extra, "toxiproxy"], grace=10)
            for database in databases:
                await asyncio.to_thread(database.fast_stop)
                await self.supervisor.stop([database.process.name], grace=10)
        finally:
            for database in databases:
                database.remove()
