"""FerretDB (v1, the MongoDB wire protocol on PostgreSQL) for tests: the second MongoDB-wire server
payment's integration tier runs against, beside nx-27017 (docs/testing.md, "A second
MongoDB-wire server").

Where the server comes from, in order:

- ``PAYMENT_MONGO_URL`` (the payment service's own variable): an existing server, used as is;
- else the FerretDB binary built once into ``$SAGASCOPE_CACHE/tools/ferretdb-<FERRETDB_VERSION>/``
  (``make ferretdb-install``, from the Go module proxy) on a throwaway PostgreSQL cluster.

Without either the FerretDB runs skip, saying why; with ``SAGASCOPE_REQUIRE_FERRETDB=1`` they fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from sagascope.local.supervisor import free_port
from tests.support import postgres as pg_support

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 60.0


def pinned_version() -> str:
    for line in (ROOT / ".env").read_text().splitlines():
        if line.startswith("FERRETDB_VERSION="):
            return line.partition("=")[2].strip()
    raise RuntimeError("FERRETDB_VERSION is not set in .env")


def cached_binary() -> Path:
    cache = Path(os.environ.get("SAGASCOPE_CACHE") or Path.home() / ".cache" / "sagascope")
    version = pinned_version()
    return cache / "tools" / f"ferretdb-{version}" / "ferretdb"


def unavailable_reason() -> str | None:
    """Why no FerretDB can be had here, or None."""
    if os.environ.get("PAYMENT_MONGO_URL"):
        return None
    if not os.access(cached_binary(), os.X_OK):
        return f"FerretDB is not built ({cached_binary()}; `make ferretdb-install`) and PAYMENT_MONGO_URL is not set"
    return pg_support.unavailable_reason()


def _ping(url: str) -> None:
    client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=1000)
    try:
        client.admin.command("ping")
    finally:
        client.close()


def command(port: int, postgres_url: str, state_dir: Path) -> list[str]:
    """FerretDB on 127.0.0.1:``port`` with its PostgreSQL backend (the tests and the chaos campaign)."""
    return [str(cached_binary()), f"--listen-addr=127.0.0.1:{port}", "--handler=postgresql",
            f"--postgresql-url={postgres_url}", f"--state-dir={state_dir}", "--telemetry=disable",
            "--debug-addr=-", "--log-level=warn"]


@contextmanager
def running_ferretdb(tmp_path: Path, postgres_url: str) -> Iterator[str]:
    """FerretDB on ``postgres_url`` with its files in ``tmp_path``; yields its ``mongodb://`` URL.
    Synchronous, so a session-scoped fixture can hold it for the whole module."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = tmp_path / "ferretdb.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command(port, postgres_url, tmp_path),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"FerretDB exited ({process.returncode}): "
                                   f"{log_path.read_text(errors='replace')[-2000:]}")
            try:
                _ping(url)
                break
            except PyMongoError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
