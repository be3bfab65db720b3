"""The supervisor with real subprocesses: health waits, TERM->KILL escalation, group kill, restart."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sagascope.local.supervisor import ManagedProcess, Supervisor, free_port, http_health, tcp_health


def http_server(tmp_path: Path, name: str = "web") -> ManagedProcess:
    port = free_port()
    return ManagedProcess(
        name,
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        dict(os.environ),
        tmp_path / "logs" / f"{name}.log",
        http_health(f"http://127.0.0.1:{port}/"),
        listens_on={"WEB_PORT": port},
    )


def python(tmp_path: Path, name: str, code: str) -> ManagedProcess:
    return ManagedProcess(
        name, [sys.executable, "-c", code], {**os.environ, "PYTHONUNBUFFERED": "1"}, tmp_path / f"{name}.log"
    )


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive: it only waits for its parent to reap it
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


async def test_start_waits_for_http_health_and_stop_terminates(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    web = supervisor.add(http_server(tmp_path))
    await supervisor.start(timeout=30)
    try:
        assert web.running
        assert web.health is not None and await web.health()
    finally:
        await supervisor.stop(grace=10)
    assert not web.running
    assert web.process is not None and web.process.returncode == -signal.SIGTERM


async def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    stubborn = supervisor.add(
        python(
            tmp_path,
            "stubborn",
            "import signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "open('ready', 'w').close()\n"
            "time.sleep(120)\n",
        )
    )
    await supervisor.start(timeout=10)
    await until(lambda: (tmp_path / "ready").exists())  # SIG_IGN is in place
    started = time.monotonic()
    await supervisor.stop_one("stubborn", grace=1.0)
    assert time.monotonic() - started >= 1.0
    assert stubborn.process is not None and stubborn.process.returncode == -signal.SIGKILL


async def test_stop_reaches_what_the_command_forked(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    child_pid_file = tmp_path / "child.pid"
    supervisor.add(
        ManagedProcess(
            "wrapper",
            ["sh", "-c", f"sleep 120 & echo $! > {child_pid_file}; wait"],
            dict(os.environ),
            tmp_path / "wrapper.log",
        )
    )
    await supervisor.start()
    await until(lambda: child_pid_file.exists() and child_pid_file.read_text().strip() != "")
    child = int(child_pid_file.read_text())
    assert alive(child)
    await supervisor.stop(grace=5)
    await until(lambda: not alive(child))
    assert not alive(child), "the wrapper's child outlived the stop"


async def test_restart_gives_a_new_healthy_process(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    web = supervisor.add(http_server(tmp_path))
    await supervisor.start(timeout=30)
    try:
        first = web.pid
        supervisor.kill("web")  # a crash
        assert web.process is not None and web.process.returncode == -signal.SIGKILL
        assert web.health is not None and not await web.health()
        await supervisor.restart("web", timeout=30)
        assert web.running and web.pid != first
        assert await web.health()
    finally:
        await supervisor.stop(grace=10)


async def test_a_failed_start_stops_what_already_runs_and_shows_the_log(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    web = supervisor.add(http_server(tmp_path))
    supervisor.add(python(tmp_path, "broken", "import sys; print('no config here'); sys.exit(3)"))
    supervisor.processes["broken"].health = tcp_health("127.0.0.1", free_port())
    with pytest.raises(RuntimeError, match="broken exited during start-up") as caught:
        await supervisor.start(timeout=30)
    assert "no config here" in str(caught.value)
    assert not web.running and web.process is not None  # it had started, and was stopped again


async def test_never_healthy_times_out_and_is_stopped(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    sleeper = supervisor.add(python(tmp_path, "sleeper", "import time; time.sleep(120)"))
    sleeper.health = tcp_health("127.0.0.1", free_port())  # nothing will ever listen there
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="sleeper was not healthy within 1s"):
        await supervisor.start(timeout=1)
    assert time.monotonic() - started < 15
    assert not sleeper.running


def test_the_prometheus_config_is_rendered_with_local_targets(tmp_path: Path) -> None:
    from sagascope.local.backends import REPO_ROOT, render_prometheus_config
    from sagascope.local.services import Ports
    from sagascope.local.topology import COLLECTOR, PROMETHEUS

    yaml = pytest.importorskip("yaml")
    ports = Ports.free()
    rendered = yaml.safe_load(
        render_prometheus_config(REPO_ROOT / "observability/prometheus/prometheus.yml", tmp_path, ports).read_text()
    )
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in rendered["scrape_configs"]}
    # The services are scraped by the collector, not by Prometheus.
    assert targets == {
        "otel-collector": [COLLECTOR.metrics.address],
        "prometheus": [PROMETHEUS.web.address],
    }
    assert all(Path(rule).is_file() for rule in rendered["rule_files"])
    assert {Path(rule).name for rule in rendered["rule_files"]} == {"alerts.rules.yml", "slo.rules.yml"}
