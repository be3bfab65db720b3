"""The game days' time-compressed rules: every duration scaled, nothing else, and promtool accepts them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sagascope.cli.gameday import AnswerKey
from sagascope.cli.gameday_rules import compress_expr, compress_rule, compressed_rule_files, seconds
from sagascope.cli.gameday_scenarios import SCENARIOS
from sagascope.local.backends import REPO_ROOT


def test_durations_in_ranges_offsets_and_subqueries_are_divided() -> None:
    expr = 'sum(rate(x_total{le="1.0"}[5m])) / sum(rate(x_total[1h] offset 10m)) > 0.5 and max_over_time(y[30m:1m]) > 2'
    assert compress_expr(expr, 20) == (
        'sum(rate(x_total{le="1.0"}[15s])) / sum(rate(x_total[180s] offset 30s)) > 0.5 and max_over_time(y[90s:1m]) > 2'
    )
    assert seconds("1h30m") == 5400
    with pytest.raises(ValueError):
        seconds("5 minutes")


def test_alerts_get_scaled_for_and_at_least_one_pending_evaluation() -> None:
    assert compress_rule({"alert": "A", "expr": "x[5m] > 1", "for": "1m"}, 20)["for"] == "3s"
    assert compress_rule({"alert": "B", "expr": "x > 1"}, 20)["for"] == "1s"
    assert compress_rule({"record": "sagascope:saga_stuck_threshold_seconds", "expr": "vector(45)"}, 20)["expr"] == (
        "vector(2.25)"
    )
    # other numbers are not durations: untouched
    assert compress_rule({"record": "r", "expr": "vector(45)"}, 20)["expr"] == "vector(45)"


def test_every_rule_file_is_compressed_and_stays_valid(tmp_path: Path) -> None:
    files = compressed_rule_files()
    assert set(files) == {"alerts.rules.yml", "slo.rules.yml"}
    alerts = [r for g in yaml.safe_load(files["alerts.rules.yml"])["groups"] for r in g["rules"] if "alert" in r]
    assert all(r["for"] for r in alerts)
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    proc = subprocess.run(["promtool", "check", "rules", *map(str, tmp_path.iterdir())], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_scenario_has_a_loadable_answer_key_naming_real_alerts() -> None:
    compressed = compressed_rule_files()
    groups = [g for text in compressed.values() for g in yaml.safe_load(text)["groups"]]
    alert_names = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    for scenario in SCENARIOS:
        key = AnswerKey.load(scenario.name)
        assert key.scenario == scenario.name
        assert key.alerts and key.spans and key.log_events
        assert {a["alertname"] for a in key.alerts} <= alert_names, scenario.name


def test_a_database_view_names_a_panel_of_the_built_dashboards() -> None:
    panels = {
        f"{board['title']} \u203a {panel['title']}"
        for path in (REPO_ROOT / "dashboards").glob("*.json")
        for board in [json.loads(path.read_text())]
        for panel in board["panels"]
    }
    views = {s.name: AnswerKey.load(s.name).database for s in SCENARIOS}
    assert views["slow-database"] is not None and views["slow-database"].top_statement == "saga_guard"
    for name, view in views.items():
        if view is not None:
            assert view.panel in panels, f"{name}: no panel {view.panel!r}"
