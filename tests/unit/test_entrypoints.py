"""``python -m sagascope.<service>``: --help lists the settings without starting anything; a bad
setting exits 2 with one line naming the variable (real subprocesses, as a user runs them)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SERVICES = {
    "identity": ("identity-service", "IDENTITY_GRPC_PORT"),
    "order": ("order-service", "ORDER_GRPC_PORT"),
    "payment": ("payment-service", "PAYMENT_GRPC_PORT"),
}


def run_module(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"sagascope.{name}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_help_lists_the_environment_variables_and_starts_nothing(name: str) -> None:
    port_variable = SERVICES[name][1]
    done = run_module(name, "--help")
    assert done.returncode == 0, done.stderr
    assert f"usage: python -m sagascope.{name}" in done.stdout
    assert port_variable in done.stdout
    assert "listening" not in done.stdout + done.stderr


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_a_malformed_setting_exits_2_naming_the_variable(name: str) -> None:
    service, port_variable = SERVICES[name]
    done = run_module(name, env={port_variable: "not-a-port"})
    assert done.returncode == 2
    expected = f"{service}: configuration error: {port_variable} must be an integer, got 'not-a-port'"
    assert done.stderr.strip() == expected
    assert "Traceback" not in done.stderr


def test_an_unknown_option_is_refused_with_usage() -> None:
    done = run_module("order", "--port", "1")
    assert done.returncode == 2
    assert "unrecognized arguments: --port 1" in done.stderr
