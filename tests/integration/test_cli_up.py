"""``sagascope up`` as a person runs it (a subprocess, ephemeral ports): it says what it really runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
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


@contextlib.asynccontextmanager
async def sagascope_up(env: dict[str, str], cwd: Path) -> AsyncIterator[list[str]]:
    """`sagascope up` as a subprocess, until it says it is ready; then Ctrl-C. Yields its output so
    far; on exit the rest is appended, and exit status 0 (a clean drain) is asserted."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sagascope.cli.main", "up",
        env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    output: list[str] = []
    try:
        async with asyncio.timeout(UP_TIMEOUT_SECONDS):
            while not any("Ctrl-C stops everything" in line for line in output):
                line = (await process.stdout.readline()).decode()
                assert line, "sagascope up exited early:\n" + "".join(output)
                output.append(line)
        yield output
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 60)
        output.append(rest.decode())
    assert process.returncode == 0, "".join(output)


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
        async with sagascope_up(env, tmp_path) as output:
            pass
        text = "".join(output)
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


async def test_up_with_mutual_tls_from_sagascope_certs(tmp_path: Path) -> None:
    """`sagascope certs`, the exports it prints, then `sagascope up` and `sagascope order` over mutual TLS."""
    from sagascope.common.dev_certs import make_development_pki

    certs = make_development_pki(tmp_path / "certs")
    tls_env = {}
    for prefix, name in (("IDENTITY", "identity"), ("ORDER", "order"), ("PAYMENT", "payment"), ("SAGASCOPE", "client")):
        tls_env |= {
            f"{prefix}_TLS_CERT_FILE": str(certs[name].cert),
            f"{prefix}_TLS_KEY_FILE": str(certs[name].key),
            f"{prefix}_TLS_CA_FILE": str(certs["ca"].cert),
        }
    ports = Ports.free()
    env = {**os.environ, **_port_env(ports), **tls_env, "SAGASCOPE_STATE_DIR": str(tmp_path / "state"),
           "SAGASCOPE_TELEMETRY": "off"}  # fmt: skip
    for key in ("ORDER_DATABASE_URL", "PAYMENT_MONGO_URL"):
        env.pop(key, None)
    async with sagascope_up(env, tmp_path):
        order = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sagascope.cli.main", "order",
            "--target", f"127.0.0.1:{ports.order_grpc}", "--identity", f"127.0.0.1:{ports.identity_grpc}",
            env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        placed, _ = await asyncio.wait_for(order.communicate(), 60)
        assert order.returncode == 0 and "COMPLETED" in placed.decode(), placed.decode()
        plain = {k: v for k, v in env.items() if not k.startswith("SAGASCOPE_TLS_")}
        refused = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sagascope.cli.main", "order",
            "--target", f"127.0.0.1:{ports.order_grpc}", "--identity", f"127.0.0.1:{ports.identity_grpc}",
            env=plain, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        await asyncio.wait_for(refused.communicate(), 60)
        assert refused.returncode != 0
