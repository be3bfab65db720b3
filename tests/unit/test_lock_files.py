"""The lock files in requirements/ stay true to pyproject.toml: every declared dependency is pinned
there at a version its specifier allows, every pin carries hashes (pip's --require-hashes refuses
anything else), and the service image's lock has no dev tools and no embedded MongoDB.

A dependency edited in pyproject.toml without `make lock` fails here, offline, before an install does.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s;\\]+)(?:\s*;\s*(?P<marker>[^\\]+?))?\s*\\?$")


def pins(lock: str) -> dict[str, list[tuple[str, Marker | None]]]:
    """name -> [(version, marker)] (a universal lock may pin one name twice, under exclusive markers)."""
    found: dict[str, list[tuple[str, Marker | None]]] = {}
    for line in (ROOT / "requirements" / lock).read_text().splitlines():
        match = PIN.match(line)
        if match:
            marker = Marker(match["marker"]) if match["marker"] else None
            found.setdefault(canonicalize_name(match["name"]), []).append((match["version"], marker))
    return found


def declared(*extras: str) -> list[Requirement]:
    lines = list(PYPROJECT["project"]["dependencies"])
    for extra in extras:
        lines += PYPROJECT["project"]["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize(("lock", "extras"), [("dev.lock", ("dev", "embedded-mongo")), ("service.lock", ())])
def test_every_declared_dependency_is_pinned_within_its_specifier(lock: str, extras: tuple[str, ...]) -> None:
    locked = pins(lock)
    here = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux"}
    problems = []
    for requirement in declared(*extras):
        if requirement.marker is not None and not requirement.marker.evaluate(here):
            continue
        versions = [v for v, marker in locked.get(canonicalize_name(requirement.name), [])
                    if marker is None or marker.evaluate(here)]
        if not versions:
            problems.append(f"{requirement} is not in requirements/{lock}")
        elif not any(requirement.specifier.contains(v, prereleases=True) for v in versions):
            problems.append(f"{requirement} but requirements/{lock} pins {versions}")
    assert not problems, "run `make lock`:\n" + "\n".join(problems)


@pytest.mark.parametrize("lock", ["dev.lock", "service.lock"])
def test_every_pin_carries_hashes(lock: str) -> None:
    text = (ROOT / "requirements" / lock).read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])  # one block a pin, after the header
    unhashed = [block.split()[0] for block in blocks if block.strip() and "--hash=sha256:" not in block]
    assert len(blocks) > 20 and not unhashed


def test_the_service_lock_leaves_out_the_dev_tools_and_the_embedded_mongodb() -> None:
    service = pins("service.lock")
    assert not {"nx-27017", "pytest", "mypy", "locust", "uv", "matplotlib"} & set(service)
    assert {"grpcio", "pymongo", "sqlalchemy", "opentelemetry-sdk"} <= set(service)
    assert "nx-27017" in pins("dev.lock")
