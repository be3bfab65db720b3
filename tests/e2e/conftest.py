"""Shared inputs of the e2e tests (set by tools/run_e2e.py)."""

from __future__ import annotations

import os

import pytest

from tests.e2e.test_backends import unavailable


@pytest.fixture(scope="module")
def correlation_id() -> str:
    """The correlation id of a compensated order from the demo run."""
    cid = os.environ.get("E2E_CORRELATION_ID", "")
    if not cid:
        unavailable("E2E_CORRELATION_ID (a compensated order's correlation id) is not set")
    return cid
