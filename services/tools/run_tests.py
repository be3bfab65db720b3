"""``make test``: lint, types, then the unit, integration and contract tiers.

Each tier runs as its own pytest call so the summary says which tier did what.
pytest's exit code 5 ("no tests collected") counts as a failure: a tier that
silently ran nothing must not pass. A tier that cannot run says why (pytest
prints the skip reasons with -rs).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

NO_TESTS_COLLECTED = 5


def step(name: str, command: list[str]) -> tuple[str, int, float]:
    print(f"\n=== {name}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    code = subprocess.call(command, cwd=REPO)
    if code == NO_TESTS_COLLECTED:
        print(f"=== {name}: pytest collected no tests — treated as a failure", flush=True)
    return name, code, time.monotonic() - started


def main() -> int:
    pytest = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"]
    tiers = [
        ("lint (ruff)", [str(BIN / "ruff"), "check", "services", "tests", "benchmarks"]),
        ("types (mypy)", [str(BIN / "mypy")]),
        ("unit", [*pytest, "tests/unit"]),
        ("integration", [*pytest, "tests/integration"]),
    ]
    if (REPO / "tests" / "contract").is_dir() and os.environ.get("SAGASCOPE_SKIP_CONTRACTS") != "1":
        tiers.append(("contract", [*pytest, "tests/contract"]))
    results = [step(name, command) for name, command in tiers]
    print("\n=== summary")
    for name, code, seconds in results:
        verdict = (
            "passed" if code == 0 else ("NO TESTS" if code == NO_TESTS_COLLECTED else f"FAILED ({code})")
        )
        print(f"  {name:<14} {verdict:<12} {seconds:6.1f}s")
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
