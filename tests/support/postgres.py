"""A throwaway PostgreSQL cluster: initdb in a temp folder from the installed binaries.

PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` system user (created by the Debian package) and commands run via
``runuser``. The cluster listens on a free loopback port with trust auth and is
removed afterwards.

When no PostgreSQL binaries are installed the tier is skipped with the reason —
unless ``SAGASCOPE_REQUIRE_POSTGRES=1`` (set by .ci/run), which makes it fail.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sagascope.local.supervisor import free_port

RUN_AS = "postgres"


TOOLS = ("initdb", "pg_ctl", "pg_isready", "createdb")


def find_bin_dir() -> Path | None:
    """A folder holding every server tool the tier needs (a lone ``initdb`` link is not enough)."""
    override = os.environ.get("SAGASCOPE_PG_BINDIR")
    if override:
        candidates = [Path(override)]
    else:
        candidates = [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
        found = shutil.which("initdb")
        if found:
            candidates.append(Path(found).resolve().parent)
    for candidate in candidates:
        if all((candidate / tool).exists() for tool in TOOLS):
            return candidate
    return None


def unavailable_reason() -> str | None:
    if find_bin_dir() is None:
        return (
            f"PostgreSQL server binaries ({', '.join(TOOLS)}) not found together; install the postgresql "
            "package or point SAGASCOPE_PG_BINDIR at them"
        )
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser, cannot start PostgreSQL as a non-root user"
    return None


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", RUN_AS, "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def throwaway_cluster(settings: dict[str, str] | None = None) -> Iterator[str]:
    """Yield a ``postgresql://`` URL of a fresh cluster with database ``sagascope``.

    ``settings`` are extra server settings (``-c name=value``), e.g. ``fsync`` or
    ``shared_preload_libraries``."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError(unavailable_reason() or "no PostgreSQL")
    root = Path(tempfile.mkdtemp(prefix="sagascope-pg-"))
    data = root / "data"
    port = free_port()
    if os.geteuid() == 0:
        shutil.chown(root, RUN_AS, RUN_AS)
    log = root / "server.log"
    try:
        subprocess.run(
            _as_owner(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        server = {"fsync": "off", "max_connections": "200", **(settings or {})}
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} " + " ".join(
            f"-c {name}={value}" for name, value in server.items()
        )
        subprocess.run(
            _as_owner(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=90,
        )
        deadline = time.monotonic() + 30
        while (
            subprocess.run(
                [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            ).returncode
            != 0
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not become ready: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "sagascope"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/sagascope"
    finally:
        subprocess.run(
            _as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(cluster_url: str, name: str) -> str:
    """A new empty database in the cluster (one per test, so tests stay independent)."""
    bin_dir = find_bin_dir()
    assert bin_dir is not None
    base, _, _ = cluster_url.rpartition("/")
    host_port = base.split("@", 1)[1]
    host, port = host_port.split(":")
    subprocess.run(
        [str(bin_dir / "createdb"), "-h", host, "-p", port, "-U", "postgres", name],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return f"{base}/{name}"
