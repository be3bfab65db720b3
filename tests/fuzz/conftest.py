"""The fuzz tier: one in-process stack for the session; the summary printed at the end."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.fuzz.harness import TALLY, LogCapture, Services


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    running = Services(tmp_path_factory.mktemp("fuzz"))
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="session")
def log_capture(services: Services) -> Iterator[LogCapture]:
    # Attached after the services start: starting them (re)configures the root logger's handlers.
    capture = LogCapture()
    root = logging.getLogger()
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY.codes:
        terminalreporter.write_line("")
        terminalreporter.write_line(TALLY.render())
