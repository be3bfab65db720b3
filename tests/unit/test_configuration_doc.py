"""docs/configuration.md lists every setting: each environment variable the code reads by name
(``env_*("X", ...)``, ``os.environ.get("X")``, ``os.getenv("X")``) and each ``${env:X}`` the
collector's configs expand is in it. Standard ``OTEL_*`` variables are honoured as the
OpenTelemetry SDK documents them (the page says so) and need no row of their own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "configuration.md"
NAME = re.compile(r"[A-Z][A-Z0-9_]+")
_ENV_CALLS = {"env_str", "env_int", "env_float", "env_bool", "env_port", "env_choice"}


def _reads_environment(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id in _ENV_CALLS
    if isinstance(func, ast.Attribute):
        owner = ast.unparse(func.value)
        return func.attr in _ENV_CALLS or (func.attr == "getenv" and owner == "os") or (
            func.attr == "get" and owner.endswith("environ")
        )
    return False


def code_variables(root: Path = REPO / "sagascope") -> dict[str, str]:
    """Variable name -> a file that reads it (generated protobuf code left out)."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        if "api" in path.relative_to(root).parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and node.args and _reads_environment(node):
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str) and NAME.fullmatch(first.value):
                    found.setdefault(first.value, str(path.relative_to(root)))
    return found


def collector_variables() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((REPO / "observability" / "otel-collector").rglob("*.y*ml")):
        for name in re.findall(r"\$\{env:([A-Z][A-Z0-9_]*)", path.read_text()):
            found.setdefault(name, str(path.relative_to(REPO)))
    return found


def documented(text: str) -> set[str]:
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", text))


def test_the_readers_are_found() -> None:
    """The scan sees the settings the services are known to read (so the next test is not vacuous)."""
    code, collector = code_variables(), collector_variables()
    assert {"ORDER_DATABASE_URL", "IDENTITY_TOKEN_TTL_SECONDS", "PAYMENT_MONGO_URL", "SAGASCOPE_ENV"} <= set(code)
    assert {"PROMETHEUS_REMOTE_WRITE_URL", "TAIL_SAMPLING_PERCENTAGE"} <= set(collector)


def test_every_variable_read_is_in_the_configuration_page() -> None:
    listed = documented(PAGE.read_text())
    wanted = {**collector_variables(), **code_variables()}
    missing = {name: where for name, where in wanted.items() if name not in listed and not name.startswith("OTEL_")}
    assert not missing, f"not in {PAGE.relative_to(REPO)}: {missing}"


def test_a_planted_variable_is_reported(tmp_path: Path) -> None:
    (tmp_path / "settings.py").write_text(
        'import os\nfrom x import env_int\nA = env_int("SAGASCOPE_PLANTED_SETTING", 1)\n'
        'B = os.environ.get("SAGASCOPE_PLANTED_TOO")\nC = {"NOT_AN_ENV_READ": 1}.get("NOT_AN_ENV_READ")\n'
    )
    assert set(code_variables(tmp_path)) == {"SAGASCOPE_PLANTED_SETTING", "SAGASCOPE_PLANTED_TOO"}
