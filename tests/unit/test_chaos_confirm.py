"""Fault confirmation (tools.chaos.confirm) against real processes and real listening sockets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from sagascope.local.supervisor import free_port
from tools.chaos.confirm import process_gone, replaced_and_serving, toxic_absent, toxic_present

LISTENER = """
import os, socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
if len(sys.argv) > 2:  # a child in the same process group that outlives nothing but itself
    os.fork() == 0 and time.sleep(60)
print("ready", flush=True); time.sleep(60)
"""


def _listener(port: int, fork: bool = False) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", LISTENER, str(port), *(["fork"] if fork else [])]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


def test_a_killed_group_is_gone_and_a_survivor_in_it_is_named(procs: list[subprocess.Popen[str]]) -> None:
    proc = _listener(free_port(), fork=True)
    procs.append(proc)
    assert "still alive" in process_gone(proc.pid)
    proc.send_signal(signal.SIGKILL)  # the leader only: its forked child lives on in the group
    proc.wait(5)
    assert "still has pid(s)" in process_gone(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while process_gone(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_gone(proc.pid) == ""


def test_a_restart_counts_only_as_a_new_pid_that_owns_the_ports(procs: list[subprocess.Popen[str]]) -> None:
    port = free_port()
    old = _listener(port)
    procs.append(old)
    assert "same pid" in replaced_and_serving(old.pid, old.pid, [port])
    other = _listener(free_port())  # a new pid, but not on the service's port
    procs.append(other)
    assert f"does not listen on [{port}]" in replaced_and_serving(old.pid, other.pid, [port])
    os.killpg(old.pid, signal.SIGKILL)
    old.wait(5)
    new = _listener(port)
    procs.append(new)
    assert replaced_and_serving(old.pid, new.pid, [port]) == ""
    assert replaced_and_serving(old.pid, None, [port]) == "no new process"


def test_a_toxic_counts_only_as_toxiproxy_lists_it() -> None:
    listed = [{"name": "t1", "type": "latency", "stream": "downstream", "toxicity": 1.0,
               "attributes": {"latency": 2500, "jitter": 250}}]
    assert toxic_present(listed, "t1", "latency", "downstream", {"latency": 2500, "jitter": 250}) == ""
    assert "does not list" in toxic_present(listed, "t2", "latency", "downstream", {"latency": 2500})
    assert "not reset_peer/upstream" in toxic_present(listed, "t1", "reset_peer", "upstream", {"timeout": 0})
    assert "attributes differ" in toxic_present(listed, "t1", "latency", "downstream", {"latency": 100})
    assert "still lists" in toxic_absent(listed, "t1")
    assert toxic_absent(listed, "t2") == ""
