"""promtool's unit tests of the alert and recording rules (observability/prometheus/tests/) run here
too, so `make test` fails when a rule no longer does what its test says; and a planted wrong
expectation proves a failing rule test fails this tier.

promtool comes with the Debian package ``prometheus`` (.ci/run installs it). Without it these
tests skip, saying so; with SAGASCOPE_REQUIRE_PROMTOOL=1 (CI) they fail instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROM_DIR = Path(__file__).resolve().parents[2] / "observability" / "prometheus"
RULE_TESTS = sorted((PROM_DIR / "tests").glob("*.test.yml"))


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed (Debian package prometheus)"
        if os.environ.get("SAGASCOPE_REQUIRE_PROMTOOL") == "1":
            pytest.fail(f"required: {reason}")
        pytest.skip(reason)
    return found


def run_rule_tests(*test_files: Path) -> subprocess.CompletedProcess[str]:
    """``promtool test rules`` on the files (their ``rule_files`` are relative to each file)."""
    return subprocess.run([_promtool(), "test", "rules", *map(str, test_files)], capture_output=True, text=True,
                          timeout=120)


def test_the_rule_files_are_valid() -> None:
    rules = sorted(PROM_DIR.glob("*rules*.yml"))
    assert rules
    proc = subprocess.run([_promtool(), "check", "rules", *map(str, rules)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests_pass(test_file: Path) -> None:
    proc = run_rule_tests(test_file)
    assert proc.returncode == 0, f"promtool test rules {test_file.name} failed:\n{proc.stdout}{proc.stderr}"
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_a_planted_wrong_expectation_fails(tmp_path: Path) -> None:
    """The same rules, one expected alert label changed: promtool must fail and name the test."""
    source = PROM_DIR / "tests" / "alerts.test.yml"
    document = yaml.safe_load(source.read_text())
    test = next(t for t in document["tests"] if any(c.get("exp_alerts") for c in t.get("alert_rule_test", [])))
    case = next(c for c in test["alert_rule_test"] if c.get("exp_alerts"))
    case["exp_alerts"][0]["exp_labels"]["severity"] = "planted-wrong-severity"
    (tmp_path / "tests").mkdir()
    for rule_file in PROM_DIR.glob("*rules*.yml"):
        shutil.copy(rule_file, tmp_path / rule_file.name)
    planted = tmp_path / "tests" / "planted.test.yml"
    planted.write_text(yaml.safe_dump(document, sort_keys=False))
    proc = run_rule_tests(planted)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert test["name"] in proc.stdout + proc.stderr and "planted-wrong-severity" in proc.stdout + proc.stderr
