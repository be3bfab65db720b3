"""``make test``: lint, types, then the unit, integration, fuzz and contract tiers.

Each tier runs as its own pytest call so the summary says which tier did what.
pytest's exit code 5 ("no tests collected") counts as a failure: a tier that
silently ran nothing must not pass. A tier that cannot run says why (pytest
prints the skip reasons with -rs).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

NO_TESTS_COLLECTED = 5
# One set for ruff and mypy (mypy's `files` in pyproject.toml names the same paths), so
# `make lint` and `make test` check the same code.
LINT_PATHS = ["sagascope", "tools", "tests", "benchmarks", "dashboards", "observability/elk"]


def failed_tests(junit: Path) -> list[str]:
    """The node ids that failed or errored, from pytest's JUnit XML (empty when there is none)."""
    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError):
        return []
    failed = []
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(f"{case.get('classname', '')}::{case.get('name', '')}")
    return failed


def step(name: str, command: list[str]) -> tuple[str, int, float, list[str]]:
    with tempfile.TemporaryDirectory(prefix="sagascope-tier-") as scratch:
        junit = Path(scratch) / "junit.xml"
        if command[1:3] == ["-m", "pytest"]:
            command = [*command, f"--junitxml={junit}"]
        print(f"\n=== {name}: {' '.join(command)}", flush=True)
        started = time.monotonic()
        code = subprocess.call(command, cwd=REPO)
        if code == NO_TESTS_COLLECTED:
            print(f"=== {name}: pytest collected no tests — treated as a failure", flush=True)
        return name, code, time.monotonic() - started, failed_tests(junit)


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
    ]
    if (REPO / "tests" / "contract").is_dir() and os.environ.get("SAGASCOPE_SKIP_CONTRACTS") != "1":
        tiers.append(("contract", [*pytest, "tests/contract"]))
    unknown = only - {name for name, _ in tiers}
    if unknown:
        print(f"unknown tier(s): {', '.join(sorted(unknown))}; known: {', '.join(name for name, _ in tiers)}")
        return 2
    results = [step(name, command) for name, command in tiers if not only or name in only]
    print("\n=== summary")
    for name, code, seconds, failed in results:
        verdict = (
            "passed" if code == 0 else ("NO TESTS" if code == NO_TESTS_COLLECTED else f"FAILED ({code})")
        )
        print(f"  {name:<14} {verdict:<12} {seconds:6.1f}s")
        # Named again here, at the end, so a log cut to its tail still says what failed.
        for node in failed:
            print(f"      failed: {node}")
    return 0 if all(code == 0 for _, code, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
