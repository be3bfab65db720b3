"""``sagascope sagas ...`` against a running ``sagascope up`` (subprocesses, free ports): list, show,
pause, a paced batch resume whose rate is measured, refusals and roles as a person sees them."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from sagascope.cli.client import OrderClient, login, order_request
from sagascope.local.services import Ports
from tests.integration.test_cli_up import _port_env, sagascope_up

pytestmark = pytest.mark.timeout(240)


def sagas(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagascope.cli.main", "sagas", *args],
        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


async def test_the_cli_lists_shows_pauses_and_resumes_a_batch_at_its_rate(tmp_path: Path) -> None:
    ports = Ports.free()
    env = {
        **os.environ,
        **_port_env(ports),
        "SAGASCOPE_STATE_DIR": str(tmp_path / "state"),
        "SAGASCOPE_TELEMETRY": "off",
        "SAGASCOPE_FAULTS_ENABLED": "true",
        # Only the operator moves the parked sagas: no periodic recovery pass during the test.
        "ORDER_RECOVERY_INTERVAL_SECONDS": "3600",
        "JAEGER_URL": "http://jaeger.example:16686",
    }
    env.pop("ORDER_DATABASE_URL", None)
    async with sagascope_up(env, tmp_path):
        token = await login(f"127.0.0.1:{ports.identity_grpc}", "alice", "alice-dev-password")
        client = OrderClient(f"127.0.0.1:{ports.order_grpc}", token)
        try:
            completed = await client.create_order(order_request("alice", "cli-ok"))
            for i in range(3):
                await client.create_order(
                    order_request("alice", f"cli-parked-{i}"), inject=("confirm_failure", "refund_failure")
                )
        finally:
            await client.close()

        listed = await asyncio.to_thread(sagas, env, "list", "--status", "failed", "--stalest")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        parked = re.findall(r"^(saga_[0-9a-f]+)\s+FAILED\s+charge", listed.stdout, re.M)
        assert len(parked) == 3, listed.stdout

        assert completed.order is not None
        shown = await asyncio.to_thread(sagas, env, "show", completed.order.id)
        assert shown.returncode == 0, shown.stderr
        assert re.search(r"step\s+reserve\s+#1\s+[\d.]+ ms\s+completed", shown.stdout), shown.stdout
        assert "COMPLETED" in shown.stdout and "http://127.0.0.1:5601/app/discover" in shown.stdout
        one = await asyncio.to_thread(sagas, env, "show", parked[0])
        assert "compensate charge" in one.stdout and "failed: compensate charge" in one.stdout

        # A change asks first; without a terminal and without --yes it refuses.
        asked = await asyncio.to_thread(sagas, env, "pause", parked[0])
        assert asked.returncode == 1 and "pass --yes" in asked.stdout
        for saga_id in parked:
            paused = await asyncio.to_thread(sagas, env, "pause", saga_id, "--yes", "--note", "quarantine")
            assert paused.returncode == 0 and "is now PAUSED" in paused.stdout, paused.stdout + paused.stderr
        again = await asyncio.to_thread(sagas, env, "pause", parked[0], "--yes")
        assert again.returncode == 1 and f"FAILED_PRECONDITION: saga {parked[0]} is PAUSED" in again.stdout
        denied = await asyncio.to_thread(sagas, env, "--user", "viewer", "list")
        assert denied.returncode == 1 and "PERMISSION_DENIED" in denied.stdout

        started = time.monotonic()
        batch = await asyncio.to_thread(sagas, env, "resume", "--all-matching", "--rate", "2", "--yes")
        elapsed = time.monotonic() - started
        assert batch.returncode == 0 and "resume: 3 applied, 0 refused" in batch.stdout, batch.stdout
        started_at = re.findall(r"^\s+(\S+)\s+saga_\S+\s+ok$", batch.stdout, re.M)
        stamps = [datetime.fromisoformat(t).timestamp() for t in started_at]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert len(stamps) == 3 and all(g >= 0.49 for g in gaps), (gaps, batch.stdout)
        assert elapsed >= 1.0

        deadline = time.monotonic() + 30
        while True:
            done = await asyncio.to_thread(sagas, env, "list", "--status", "COMPENSATED")
            if len(re.findall(r"^saga_\S+\s+COMPENSATED", done.stdout, re.M)) == 3:
                break
            assert time.monotonic() < deadline, done.stdout
            await asyncio.sleep(0.5)
        audit = await asyncio.to_thread(sagas, env, "show", parked[0])
        assert re.search(r"pause\s+by operator\s+FAILED -> PAUSED\s+note: quarantine", audit.stdout), audit.stdout
        assert re.search(r"resume\s+by operator\s+PAUSED -> FAILED", audit.stdout), audit.stdout
    print(f"batch resume of 3 sagas at 2/s: item gaps {[round(g, 3) for g in gaps]} s, {elapsed:.2f} s in all")
