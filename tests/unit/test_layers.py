"""The package layers point one way: a lower layer never imports a higher one.

api (generated) < common < saga < the services (identity, order, payment) < local < cli.
A service does not import another service either: they talk over gRPC. Every import counts,
including the ones inside functions, so a lazy import cannot hide a wrong direction.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sagascope"
SERVICES = ("identity", "order", "payment")
# what each layer may not import (as sagascope.<name>)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "api": ("common", "saga", *SERVICES, "local", "cli"),
    "common": ("saga", *SERVICES, "local", "cli"),
    "saga": (*SERVICES, "local", "cli"),
    **{service: (*(s for s in SERVICES if s != service), "local", "cli") for service in SERVICES},
    "local": ("cli",),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def layer_violations(layer: str) -> list[str]:
    forbidden = {f"sagascope.{name}" for name in FORBIDDEN[layer]}
    violations = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for line, module in imported_modules(path):
            top = ".".join(module.split(".")[:2])
            if top in forbidden:
                violations.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    return violations


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_down(layer: str) -> None:
    assert (PACKAGE / layer).is_dir(), f"sagascope/{layer} is gone: update the layer list"
    assert layer_violations(layer) == []


def test_the_check_sees_a_planted_violation(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from sagascope.local.topology import ORDER\n    return ORDER\n")
    assert imported_modules(planted) == [(2, "sagascope.local.topology")]
