"""tools/run_tests.py never lets a tier pass silently: a left-out tier and every skipped test appear
in the summary with their reason, and under CI a left-out tier fails the run."""

from __future__ import annotations

import sys
from pathlib import Path

from tools import run_tests
from tools.run_tests import SKIPPED, TierResult, left_out, step, summary

TIER = '''
import pytest

def test_runs() -> None:
    assert True

def test_needs_a_tool() -> None:
    pytest.skip("frobnicator is not installed")

@pytest.mark.skip(reason="frobnicator is not installed")
def test_needs_it_too() -> None:
    pass
'''


def test_skip_contracts_is_a_skipped_tier_with_its_reason() -> None:
    assert left_out({"SAGASCOPE_SKIP_CONTRACTS": "1"}) == {"contract": "SAGASCOPE_SKIP_CONTRACTS=1 is set"}
    assert left_out({}) == {}
    skipped = TierResult("contract", SKIPPED, skipped_because="SAGASCOPE_SKIP_CONTRACTS=1 is set")
    lines, passed = summary([TierResult("unit", 0, 1.0), skipped], ci=False)
    assert passed
    assert any("contract" in line and "SKIPPED" in line and "SAGASCOPE_SKIP_CONTRACTS=1" in line for line in lines)


def test_under_ci_a_skipped_tier_fails_the_run() -> None:
    lines, passed = summary([TierResult("unit", 0, 1.0), TierResult("contract", SKIPPED, skipped_because="why")],
                            ci=True)
    assert not passed
    assert lines[-1] == "  under CI every tier must run; skipped: contract"


def test_tests_a_tier_skipped_are_counted_by_reason(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "test_tier.py").write_text(TIER)
    monkeypatch.setattr(run_tests, "REPO", tmp_path)
    result = step("planted", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)])
    assert result.code == 0
    assert result.skips == {"frobnicator is not installed": 2}
    lines, passed = summary([result], ci=True)
    assert passed  # skipped tests are reported; the tier itself ran
    assert "      skipped 2: frobnicator is not installed" in lines
