"""A real nx-27017 (MongoDB wire protocol over SQLite) for tests, on a free loopback port.

    async with running_nx27017(tmp_path) as url:
        client = AsyncMongoClient(url)

The server runs as a subprocess (foreground, not ``--daemon``) with its SQLite
file, log file and pid file in ``tmp_path``; it is stopped (SIGTERM, then
SIGKILL) when the block exits. If it does not answer ``ping`` in time the error
includes the tail of its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from pymongo import AsyncMongoClient

from sagascope.local.services import embedded_mongo_binary
from sagascope.local.supervisor import free_port

START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 5.0


def _nx27017_command() -> list[str]:
    return [str(embedded_mongo_binary(sys.executable))]  # the venv's, beside this interpreter


def _log_tail(log_file: Path) -> str:
    return log_file.read_text(errors="replace")[-2000:] if log_file.exists() else "(no log file)"


async def _wait_for_ping(url: str, process: asyncio.subprocess.Process, log_file: Path) -> None:
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT_SECONDS
    last_error: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        if process.returncode is not None:
            break
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(url, serverSelectionTimeoutMS=500)
        try:
            await client.admin.command("ping")
            return
        except Exception as exc:  # not up yet: connection refused, selection timeout, ...
            last_error = exc
        finally:
            await client.close()
        await asyncio.sleep(0.1)
    tail = await asyncio.to_thread(_log_tail, log_file)
    state = f"exited with {process.returncode}" if process.returncode is not None else "still running"
    raise RuntimeError(
        f"nx-27017 did not answer ping at {url} within {START_TIMEOUT_SECONDS}s ({state}); "
        f"last error: {last_error!r}; log tail:\n{tail}"
    )


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def running_nx27017(tmp_path: Path, port: int | None = None) -> AsyncIterator[str]:
    """Start nx-27017 with its files in ``tmp_path`` (on ``port``, or a free one); yield its
    ``mongodb://`` URL; stop it."""
    await asyncio.to_thread(tmp_path.mkdir, parents=True, exist_ok=True)
    port = port or free_port()
    log_file = tmp_path / "nx-27017.log"
    command = [
        *_nx27017_command(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--db",
        str(tmp_path / "nx-27017.db"),
        "--log-file",
        str(log_file),
        "--pid-file",
        str(tmp_path / "nx-27017.pid"),
    ]
    stdout = (tmp_path / "nx-27017.stdout").open("wb")
    process = await asyncio.create_subprocess_exec(
        *command, stdout=stdout, stderr=asyncio.subprocess.STDOUT, env={**os.environ}
    )
    url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    try:
        await _wait_for_ping(url, process, log_file)
        yield url
    finally:
        await _stop(process)
        stdout.close()
