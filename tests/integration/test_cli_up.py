"""``sagascope up`` as a person runs it (a subprocess, ephemeral ports): it says what it really runs."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from sagascope.local.services import LocalStack, Ports
from sagascope.local.supervisor import free_port
from tests.support.mongo import running_nx27017

UP_TIMEOUT_SECONDS = 90.0


def _port_env(ports: Ports) -> dict[str, str]:
    return {
        "IDENTITY_GRPC_PORT": str(ports.identity_grpc),
        "IDENTITY_HTTP_PORT": str(ports.identity_http),
        "IDENTITY_METRICS_PORT": str(ports.identity_metrics),
        "ORDER_GRPC_PORT": str(ports.order_grpc),
        "ORDER_METRICS_PORT": str(ports.order_metrics),
        "PAYMENT_GRPC_PORT": str(ports.payment_grpc),
        "PAYMENT_METRICS_PORT": str(ports.payment_metrics),
        "SAGASCOPE_MONGO_PORT": str(ports.mongo),
    }


async def test_up_with_an_external_mongo_says_so_and_starts_no_nx27017(tmp_path: Path) -> None:
    """Defect 9: with PAYMENT_MONGO_URL set, no "embedded ... nx-27017" claim and no nx-27017 process."""
    async with running_nx27017(tmp_path / "external-mongo") as mongo_url:
        ports = Ports.free()
        env = {
            **os.environ,
            **_port_env(ports),
            "PAYMENT_MONGO_URL": mongo_url,
            "SAGASCOPE_STATE_DIR": str(tmp_path / "state"),
            "SAGASCOPE_TELEMETRY": "off",
        }
        env.pop("ORDER_DATABASE_URL", None)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sagascope.cli.main", "up",
            env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert process.stdout is not None
        output: list[str] = []
        try:
            async with asyncio.timeout(UP_TIMEOUT_SECONDS):
                while not any("Ctrl-C stops everything" in line for line in output):
                    line = (await process.stdout.readline()).decode()
                    assert line, "sagascope up exited early:\n" + "".join(output)
                    output.append(line)
        finally:
            process.send_signal(signal.SIGINT)
            rest, _ = await asyncio.wait_for(process.communicate(), 60)
            output.append(rest.decode())
        text = "".join(output)
        assert process.returncode == 0, text
        assert "embedded: SQLite + nx-27017" not in text
        assert f"payments on MongoDB {mongo_url} (PAYMENT_MONGO_URL; no nx-27017 started)" in text
        assert "(external; no nx-27017 started)" in text
        assert not (tmp_path / "state" / "logs" / "nx-27017.log").exists()


def test_the_summary_names_the_real_stores_and_hides_passwords(tmp_path: Path) -> None:
    embedded = LocalStack(tmp_path, Ports.free(), database_url=f"sqlite:///{tmp_path}/o.db")
    assert embedded.storage_summary() == (
        f"orders on SQLite, payments on nx-27017 (embedded, port {embedded.ports.mongo})"
    )
    external = LocalStack(
        tmp_path,
        Ports.free(),
        database_url="postgresql://orders:s3cret@db:5432/orders",
        mongo_url=f"mongodb://pay:hunter2@127.0.0.1:{free_port()}",
    )
    summary = external.storage_summary()
    assert "s3cret" not in summary and "hunter2" not in summary
    assert summary.startswith("orders on PostgreSQL postgresql://orders:***@db:5432/orders, payments on MongoDB ")
    assert "mongo" not in external.processes
