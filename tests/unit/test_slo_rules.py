"""The committed SLO rules are what Sloth generates from observability/slo/ (no hand edits).

Sloth is built from the Go module proxy (scripts/backends/build_sloth.sh, version pinned in
.env). Without it this test skips and says why; with SAGASCOPE_REQUIRE_SLOTH=1 (CI) it fails.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "observability" / "slo" / "sagascope.slo.yml"
RULES = REPO / "observability" / "prometheus" / "slo.rules.yml"


def _sloth() -> Path:
    version = next(
        line.split("=", 1)[1].strip()
        for line in (REPO / ".env").read_text().splitlines()
        if line.startswith("SLOTH_VERSION=")
    )
    cache = Path(os.environ.get("SAGASCOPE_CACHE", Path.home() / ".cache" / "sagascope"))
    binary = cache / "tools" / f"sloth-{version}" / "sloth"
    if not binary.is_file():
        reason = f"sloth {version} is not built ({binary}); run `bash scripts/backends/build_sloth.sh`"
        if os.environ.get("SAGASCOPE_REQUIRE_SLOTH", "") not in ("", "0"):
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def test_committed_slo_rules_match_the_specs(tmp_path: Path) -> None:
    out = tmp_path / "slo.rules.yml"
    proc = subprocess.run(
        [str(_sloth()), "generate", "-i", str(SPEC), "-o", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.read_text() == RULES.read_text(), (
        "observability/prometheus/slo.rules.yml drifted from observability/slo/: run `make slo`"
    )


def test_every_slo_has_page_and_ticket_alerts_with_a_runbook() -> None:
    spec = yaml.safe_load(SPEC.read_text())
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    alerts = [r for r in rules if "alert" in r]
    for slo in spec["slos"]:
        name = slo["alerting"]["name"]
        severities = sorted(a["labels"]["severity"] for a in alerts if a["alert"] == name)
        assert severities == ["page", "ticket"], name
        assert all(a["annotations"]["runbook_url"] == f"docs/runbooks/{name}.md" for a in alerts if a["alert"] == name)
