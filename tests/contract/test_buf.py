"""`buf lint` and `buf breaking` over protos/, through scripts/contracts/buf.sh (what `make contracts` runs).

buf is built once from the Go module proxy into ${SAGASCOPE_CACHE:-~/.cache/sagascope}/bin
(`make buf-install`, a few minutes on two cores). Without that binary these tests skip and
say so — unless SAGASCOPE_REQUIRE_BUF=1 (CI's contracts job), which makes them fail.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "contracts" / "buf.sh"
BUF = Path(os.environ.get("SAGASCOPE_CACHE", Path.home() / ".cache" / "sagascope")) / "bin" / "buf"


@pytest.fixture(autouse=True)
def _buf_available() -> None:
    if not BUF.exists():
        reason = f"buf is not built at {BUF}; run `make buf-install` (Go module proxy)"
        if os.environ.get("SAGASCOPE_REQUIRE_BUF") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_buf_lint_passes() -> None:
    result = _run("lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "buf lint: OK" in result.stdout


def test_buf_breaking_passes_and_names_its_baseline() -> None:
    result = _run("breaking")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "buf breaking protos against commit" in result.stdout


def test_buf_breaking_catches_a_renamed_field(tmp_path: Path) -> None:
    """The check can fail: a copy of protos/ with a renamed field is breaking against HEAD."""
    changed = tmp_path / "protos"
    subprocess.run(["cp", "-r", str(ROOT / "protos"), str(changed)], check=True)
    proto = changed / "sagascope" / "payments" / "v1" / "payments.proto"
    proto.write_text(proto.read_text().replace("int64 amount_minor = 2;", "int64 amount_cents = 2;", 1))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    result = subprocess.run(
        [str(BUF), "breaking", str(changed), "--against", f"{ROOT}/.git#ref={head.stdout.strip()},subdir=protos"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "amount_cents" in result.stdout + result.stderr
