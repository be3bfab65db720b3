"""A time-compressed copy of the alert rules, so a game day (and the e2e tier) sees alerts go
pending, fire and resolve in minutes instead of hours.

Every duration in the committed rules is divided by ``factor`` (default 20,
``SAGASCOPE_GAMEDAY_TIME_FACTOR``): range selectors
(``[5m]`` -> ``[15s]``), ``offset``, ``for:``, and the duration thresholds kept as
``sagascope:*_threshold_seconds`` recording rules. An alert without ``for:`` gets ``for: 1s``,
so its pending state lasts one evaluation (5 s) and can be observed. Numbers that are not
durations (ratios, burn-rate factors) are untouched, so the rules' logic is the committed one.

The copy is written next to the running Prometheus's rendered config, which is pointed at it
and reloaded (``--web.enable-lifecycle``); :func:`restore` points it back.
"""

from __future__ import annotations

import os
import re
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from sagascope.local.backends import REPO_ROOT

RULES_DIR = REPO_ROOT / "observability" / "prometheus"
# Keep 5m / factor at least twice the scrape interval (5 s), so the shortest window still holds
# two samples for rate().
DEFAULT_FACTOR = float(os.environ.get("SAGASCOPE_GAMEDAY_TIME_FACTOR", "20"))

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_RANGE = re.compile(r"\[((?:\d+(?:ms|s|m|h|d|w|y))+)(:[^\]]*)?\]")
_OFFSET = re.compile(r"\boffset\s+((?:\d+(?:ms|s|m|h|d|w|y))+)")
_THRESHOLD = re.compile(r"^vector\((\d+(?:\.\d+)?)\)$")


def seconds(duration: str) -> float:
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def duration(secs: float) -> str:
    """Whole seconds, at least 1 (Prometheus durations are integers of a unit)."""
    return f"{max(1, round(secs))}s"


def compress_expr(expr: str, factor: float) -> str:
    def ranged(match: re.Match[str]) -> str:
        return f"[{duration(seconds(match.group(1)) / factor)}{match.group(2) or ''}]"

    expr = _RANGE.sub(ranged, expr)
    return _OFFSET.sub(lambda m: f"offset {duration(seconds(m.group(1)) / factor)}", expr)


def compress_rule(rule: dict[str, Any], factor: float) -> dict[str, Any]:
    out = dict(rule)
    expr = str(rule["expr"]).strip()
    threshold = _THRESHOLD.match(expr)
    if rule.get("record", "").endswith("_threshold_seconds") and threshold:
        out["expr"] = f"vector({float(threshold.group(1)) / factor:g})"
    else:
        out["expr"] = compress_expr(str(rule["expr"]), factor)
    if "alert" in rule:
        out["for"] = duration(seconds(rule["for"]) / factor) if rule.get("for") else "1s"
    return out


def compressed_rule_files(factor: float = DEFAULT_FACTOR, source: Path = RULES_DIR) -> dict[str, str]:
    """File name -> YAML text, for every ``*.rules.yml`` in ``source``."""
    files = {}
    for path in sorted(source.glob("*.rules.yml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc.get("groups", []):
            group["rules"] = [compress_rule(r, factor) for r in group.get("rules", [])]
        header = f"# {path.name} with every duration divided by {factor:g} (sagascope.cli.gameday_rules). Generated.\n"
        files[path.name] = header + yaml.safe_dump(doc, sort_keys=False, width=200)
    return files


def _reload(prometheus_url: str) -> None:
    request = urllib.request.Request(f"{prometheus_url.rstrip('/')}/-/reload", method="POST")
    with urllib.request.urlopen(request, timeout=30):
        pass


def install(config: Path, prometheus_url: str, factor: float = DEFAULT_FACTOR) -> list[Path]:
    """Write the compressed rules beside the rendered ``config``, point it at them, reload."""
    target = config.parent / "gameday-rules"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in compressed_rule_files(factor).items():
        path = target / name
        path.write_text(text)
        written.append(path)
    doc = yaml.safe_load(config.read_text())
    doc["rule_files"] = [str(path.resolve()) for path in written]
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    _reload(prometheus_url)
    return written


def restore(config: Path, prometheus_url: str) -> None:
    """Point the rendered config back at the committed rules (all of them) and reload."""
    doc = yaml.safe_load(config.read_text())
    doc["rule_files"] = [str(path) for path in sorted(RULES_DIR.glob("*.rules.yml"))]
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    _reload(prometheus_url)
