"""Grafana's provisioning and the dashboards agree, in compose and in the Kubernetes dev overlay.

- every datasource uid a dashboard names (panels, targets, data links) is provisioned;
- every environment variable the datasources file expands (``$VAR`` / ``${VAR}``; ``$$`` is a
  literal ``$``) is given to Grafana by compose and by the dev overlay — otherwise Grafana would
  expand it to nothing and the saga-log datasource would log in as nobody.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DATASOURCES = REPO / "observability" / "grafana" / "provisioning" / "datasources" / "datasources.yml"
DEV = REPO / "deploy" / "k8s" / "overlays" / "dev"


def provisioned() -> dict[str, str]:
    doc = yaml.safe_load(DATASOURCES.read_text())
    return {ds["uid"]: ds["type"] for ds in doc["datasources"]}


def expanded_variables(text: str) -> set[str]:
    text = text.replace("$$", "")
    return set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", text))


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def dashboard_uids() -> dict[str, str | None]:
    """uid -> type (None where only a data link names the uid) of every datasource the boards use."""
    uids: dict[str, str | None] = {}
    for path in sorted((REPO / "dashboards").glob("*.json")):
        for node in _walk(json.loads(path.read_text())):
            ref = node.get("datasource")
            if isinstance(ref, dict) and "uid" in ref:
                uids[ref["uid"]] = ref.get("type")
            if "datasourceUid" in node:
                uids.setdefault(node["datasourceUid"], None)
    return uids


def test_every_datasource_a_dashboard_names_is_provisioned_with_its_type() -> None:
    have, used = provisioned(), dashboard_uids()
    assert {"prometheus", "jaeger", "elasticsearch", "postgres"} <= set(used), used
    for uid, kind in used.items():
        assert uid in have, f"dashboards use datasource uid {uid!r}; {DATASOURCES.name} has {sorted(have)}"
        assert kind is None or kind == have[uid], f"{uid}: dashboards say type {kind}, provisioning {have[uid]}"


def test_compose_gives_grafana_every_variable_its_datasources_expand() -> None:
    needed = expanded_variables(DATASOURCES.read_text())
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} <= needed, needed
    grafana = yaml.safe_load((REPO / "docker-compose.yaml").read_text())["services"]["grafana"]
    assert needed <= set(grafana["environment"]), needed - set(grafana["environment"])
    assert "postgres" in grafana["depends_on"]


def test_the_dev_overlay_gives_grafana_every_variable_its_datasources_expand() -> None:
    needed = expanded_variables(DATASOURCES.read_text())
    docs = [d for d in yaml.safe_load_all((DEV / "grafana.yaml").read_text()) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    secrets = {
        s["name"]: {lit.split("=", 1)[0] for lit in s.get("literals", [])}
        for s in yaml.safe_load((DEV / "kustomization.yaml").read_text())["secretGenerator"]
    }
    given = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        given |= secrets.get(source["secretRef"]["name"], set())
    assert needed <= given, f"Grafana in the dev overlay lacks {needed - given}"


def test_expanded_variables_reads_grafanas_syntax() -> None:
    assert expanded_variables("user: $A\npassword: ${B}\nquery: 'x:\"$${__trace.traceId}\"'") == {"A", "B"}
