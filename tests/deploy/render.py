"""Rendering the kustomize overlays with the built kubectl, and reading the result."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
# Every overlay a user applies: without and with components/istio.
OVERLAYS = ["dev", "production", "dev-istio", "production-istio"]
NAMESPACE = "sagascope"
APP = ["identity", "order", "payment"]
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}


@dataclass(frozen=True)
class Rendering:
    overlay: str
    text: str
    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        matches = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert matches, f"{self.overlay}: no {kind} {name}"
        return matches[0]

    def workloads(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] in WORKLOAD_KINDS]

    @property
    def istio(self) -> bool:
        return self.overlay.endswith("-istio")


def render(kubectl: Path, overlay: str) -> Rendering:
    proc = subprocess.run(
        [str(kubectl), "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"kubectl kustomize overlays/{overlay} failed:\n{proc.stderr}"
    objects = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    return Rendering(overlay, proc.stdout, objects)


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def app_name(obj: dict[str, Any]) -> str:
    labels = obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
    return str(labels.get("app.kubernetes.io/name", obj["metadata"]["name"]))


def in_namespace(rendering: Rendering, namespace: str) -> str:
    """The rendering moved to another namespace (one API server holds every overlay at once)."""
    docs = []
    for original in rendering.objects:
        obj = yaml.safe_load(yaml.safe_dump(original))
        meta = obj["metadata"]
        if obj["kind"] == "Namespace":
            meta["name"] = namespace
        elif meta.get("namespace") == NAMESPACE:
            meta["namespace"] = namespace
        if obj["kind"] in {"ClusterRole", "ClusterRoleBinding"}:
            meta["name"] = f"{meta['name']}-{namespace}"
        if obj["kind"] == "ClusterRoleBinding":
            obj["roleRef"]["name"] = f"{obj['roleRef']['name']}-{namespace}"
            for subject in obj.get("subjects", []):
                if subject.get("namespace") == NAMESPACE:
                    subject["namespace"] = namespace
        docs.append(obj)
    return yaml.safe_dump_all(docs, sort_keys=False)
