"""``make test``: lint, types, then the unit, integration, fuzz and contract tiers.

Each tier runs as its own pytest call so the summary says which tier did what.
pytest's exit code 5 ("no tests collected") counts as a failure: a tier that
silently ran nothing must not pass. A tier left out (``SAGASCOPE_SKIP_CONTRACTS=1``,
or its folder missing) appears in the summary as SKIPPED with the reason, and so
does every test a tier skipped (grouped by reason, from pytest's JUnit XML); under
CI (``CI=true``) a skipped tier fails the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

NO_TESTS_COLLECTED = 5
# One set for ruff and mypy (mypy's `files` in pyproject.toml names the same paths), so
# `make lint` and `make test` check the same code.
LINT_PATHS = ["sagascope", "tools", "tests", "benchmarks", "dashboards", "observability/elk"]


SKIPPED = -1  # a tier left out; its reason is in TierResult.skipped_because


@dataclass
class TierResult:
    name: str
    code: int
    seconds: float = 0.0
    failed: list[str] = field(default_factory=list)  # node ids
    skips: Counter[str] = field(default_factory=Counter)  # tests skipped inside the tier, by reason
    skipped_because: str = ""

    @property
    def verdict(self) -> str:
        if self.code in (SKIPPED, 0):
            return "SKIPPED" if self.code else "passed"
        return "NO TESTS" if self.code == NO_TESTS_COLLECTED else f"FAILED ({self.code})"


def failed_tests(junit: Path) -> list[str]:
    """The node ids that failed or errored, from pytest's JUnit XML (empty when there is none)."""
    return junit_outcomes(junit)[0]


def junit_outcomes(junit: Path) -> tuple[list[str], Counter[str]]:
    """(node ids that failed or errored, skipped tests counted by reason) from pytest's JUnit XML."""
    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError):
        return [], Counter()
    failed: list[str] = []
    skips: Counter[str] = Counter()
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(f"{case.get('classname', '')}::{case.get('name', '')}")
        skipped = case.find("skipped")
        if skipped is not None:
            skips[(skipped.get("message") or "no reason given").removeprefix("Skipped: ")] += 1
    return failed, skips


def step(name: str, command: list[str]) -> TierResult:
    with tempfile.TemporaryDirectory(prefix="sagascope-tier-") as scratch:
        junit = Path(scratch) / "junit.xml"
        if command[1:3] == ["-m", "pytest"]:
            command = [*command, f"--junitxml={junit}"]
        print(f"\n=== {name}: {' '.join(command)}", flush=True)
        started = time.monotonic()
        code = subprocess.call(command, cwd=REPO)
        if code == NO_TESTS_COLLECTED:
            print(f"=== {name}: pytest collected no tests — treated as a failure", flush=True)
        failed, skips = junit_outcomes(junit)
        return TierResult(name, code, time.monotonic() - started, failed, skips)


def left_out(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Tiers that will not run, with the reason for the summary."""
    reasons = {}
    if not (REPO / "tests" / "contract").is_dir():
        reasons["contract"] = "tests/contract does not exist in this checkout"
    elif environ.get("SAGASCOPE_SKIP_CONTRACTS") == "1":
        reasons["contract"] = "SAGASCOPE_SKIP_CONTRACTS=1 is set"
    return reasons


def summary(results: list[TierResult], ci: bool) -> tuple[list[str], bool]:
    """The summary lines, and whether the run passed."""
    lines = ["", "=== summary"]
    for r in results:
        detail = r.skipped_because if r.code == SKIPPED else (f"{r.seconds:6.1f}s" if r.seconds else "")
        lines.append(f"  {r.name:<14} {r.verdict:<12} {detail}".rstrip())
        # Named again here, at the end, so a log cut to its tail still says what failed.
        lines += [f"      failed: {node}" for node in r.failed]
        lines += [f"      skipped {count}: {reason}" for reason, count in r.skips.most_common()]
    skipped = [r.name for r in results if r.code == SKIPPED]
    if ci and skipped:
        lines.append(f"  under CI every tier must run; skipped: {', '.join(skipped)}")
    passed = all(r.code == 0 for r in results if r.code != SKIPPED) and not (ci and skipped)
    return lines, passed


def main(argv: list[str] | None = None) -> int:
    """Run every tier, or only those named (``lint``, ``types``, ``unit``, ...)."""
    only = set(sys.argv[1:] if argv is None else argv)
    pytest = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider"]
    tiers = [
        ("lint", [str(BIN / "ruff"), "check", *LINT_PATHS]),
        ("types", [str(BIN / "mypy")]),
        ("unit", [*pytest, "tests/unit"]),
        ("integration", [*pytest, "tests/integration"]),
        # hypothesis with a fixed seed and a small budget (FUZZ_EXAMPLES); `make fuzz` runs more.
        ("fuzz", [*pytest, "tests/fuzz"]),
        ("contract", [*pytest, "tests/contract"]),
    ]
    unknown = only - {name for name, _ in tiers}
    if unknown:
        print(f"unknown tier(s): {', '.join(sorted(unknown))}; known: {', '.join(name for name, _ in tiers)}")
        return 2
    reasons = left_out()
    results = [
        TierResult(name, SKIPPED, skipped_because=reasons[name]) if name in reasons else step(name, command)
        for name, command in tiers
        if not only or name in only
    ]
    lines, passed = summary(results, ci=os.environ.get("CI", "") not in ("", "0", "false"))
    print("\n".join(lines))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
