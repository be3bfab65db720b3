"""The real grpcurl, built by ``make grpcurl-install`` (version pinned in .env as GRPCURL_VERSION)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _pinned_version() -> str:
    for line in (ROOT / ".env").read_text().splitlines():
        if line.startswith("GRPCURL_VERSION="):
            return line.split("=", 1)[1].strip()
    raise RuntimeError("GRPCURL_VERSION is not pinned in .env")


def grpcurl_binary() -> Path:
    """The binary, or a skip saying how to build it (a failure when SAGASCOPE_REQUIRE_GRPCURL=1)."""
    cache = Path(os.environ.get("SAGASCOPE_CACHE", Path.home() / ".cache" / "sagascope"))
    version = _pinned_version()
    binary = cache / "tools" / f"grpcurl-{version}" / "grpcurl"
    if not binary.exists():
        reason = f"grpcurl {version} is not built at {binary}; run `make grpcurl-install` (Go module proxy)"
        if os.environ.get("SAGASCOPE_REQUIRE_GRPCURL") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def run_grpcurl(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(grpcurl_binary()), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
