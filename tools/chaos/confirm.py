"""Did a fault really happen? Read back from the system, never taken from the injector's intent.

- A kill counts when the old process (and everything in its process group) is gone, and a *new*
  pid — not the old one — owns the listening sockets and answers the health check.
- A toxic counts when toxiproxy lists it on the proxy with the type, stream and attributes asked
  for, and its heal when toxiproxy no longer lists it.

Each check returns the reason it failed, or "" when confirmed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import psutil


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def process_gone(pid: int) -> str:
    """The process ``pid`` and every member of its process group (it led one) are dead."""
    try:
        leader = psutil.Process(pid)
    except psutil.NoSuchProcess:
        leader = None
    if leader is not None and _alive(leader):
        return f"pid {pid} is still alive ({leader.status()})"
    left = []
    for process in psutil.process_iter():
        try:
            if process.pid != pid and _pgid(process.pid) == pid and _alive(process):
                left.append(process.pid)
        except psutil.NoSuchProcess:
            continue
    return f"process group {pid} still has pid(s) {left}" if left else ""


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN owned by ``pid`` or any of its descendants."""
    root = psutil.Process(pid)
    ports: set[int] = set()
    for process in [root, *root.children(recursive=True)]:
        try:
            connections = process.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        ports.update(c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN and c.laddr)
    return ports


def replaced_and_serving(old_pid: int, new_pid: int | None, ports: Iterable[int]) -> str:
    """The restart is a new process that owns every port the service listens on (the health check,
    run by the caller, then proves it answers)."""
    if new_pid is None:
        return "no new process"
    if new_pid == old_pid:
        return f"the same pid {old_pid} still runs: it was never replaced"
    try:
        owned = _listening_ports(new_pid)
    except psutil.NoSuchProcess:
        return f"new pid {new_pid} is gone"
    missing = sorted(set(ports) - owned)
    return f"new pid {new_pid} does not listen on {missing}" if missing else ""


def toxic_present(listed: list[dict[str, Any]], name: str, toxic_type: str, stream: str,
                  attributes: Mapping[str, int]) -> str:
    """``listed`` is toxiproxy's ``GET /proxies/<proxy>/toxics``."""
    found = next((t for t in listed if t.get("name") == name), None)
    if found is None:
        return f"toxiproxy does not list toxic {name!r}"
    if found.get("type") != toxic_type or found.get("stream") != stream:
        return f"toxic {name!r} is {found.get('type')}/{found.get('stream')}, not {toxic_type}/{stream}"
    if float(found.get("toxicity", 0)) < 1.0:
        return f"toxic {name!r} has toxicity {found.get('toxicity')}"
    got = found.get("attributes") or {}
    wrong = {k: got.get(k) for k, v in attributes.items() if got.get(k) != v}
    return f"toxic {name!r} attributes differ: {wrong}" if wrong else ""


def toxic_absent(listed: list[dict[str, Any]], name: str) -> str:
    return f"toxiproxy still lists toxic {name!r} after its removal" if any(
        t.get("name") == name for t in listed) else ""
