"""Rendering the kustomize overlays with the built kubectl, and reading the result."""

from __future__ import annotations

import shutil
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
# The node agent's own namespace (Pod Security "privileged" for its read-only /var/log/pods).
NODE_NAMESPACE = "sagascope-agent"
APP = ["identity", "order", "payment"]
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}
# What the overlays read besides deploy/k8s (kustomizations beside the config files).
TREE = ["deploy/k8s", "observability", "dashboards"]
# The files a user writes before rendering production (each has a *.example beside it); the tier
# renders with these. A digest, as production demands, and one host per external backend.
TEST_DIGEST = "sha256:" + "5a" * 32
TEST_INPUTS = {
    "overlays/production/release.env": f"SERVICE_IMAGE=sagascope/service@{TEST_DIGEST}\n",
    "overlays/production-istio/backends.env": (
        "POSTGRES_HOST=postgres.db.test.internal\n"
        "POSTGRES_CIDR=10.20.0.0/24\n"
        "MONGODB_HOST=*.mongo.test.internal\n"
        "MONGODB_CIDR=10.20.1.0/24\n"
        "JAEGER_HOST=jaeger.observability.test.internal\n"
        "ELASTICSEARCH_HOST=es.observability.test.internal\n"
        "PROMETHEUS_HOST=prometheus.observability.test.internal\n"
    ),
}


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


def copy_tree(dest: Path, inputs: dict[str, str]) -> Path:
    """The manifests and the config files they read, copied to ``dest`` with ``inputs`` (paths
    under deploy/k8s) written in — never a user's own release inputs. Returns the copy's deploy/k8s."""
    for part in TREE:
        shutil.copytree(REPO / part, dest / part, ignore=shutil.ignore_patterns(*(Path(p).name for p in TEST_INPUTS)))
    k8s = dest / "deploy" / "k8s"
    for path, text in inputs.items():
        (k8s / path).write_text(text)
    return k8s


def kustomize(kubectl: Path, overlay: str, k8s: Path = K8S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kubectl), "kustomize", str(k8s / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )


def render(kubectl: Path, overlay: str, k8s: Path = K8S) -> Rendering:
    proc = kustomize(kubectl, overlay, k8s)
    assert proc.returncode == 0, f"kubectl kustomize overlays/{overlay} failed:\n{proc.stderr}"
    objects = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    return Rendering(overlay, proc.stdout, objects)


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def minimum_replicas(rendering: Rendering, workload: dict[str, Any]) -> int:
    """Pods a workload keeps: its replicas, or the minimum of the HorizontalPodAutoscaler owning it."""
    if workload["kind"] == "Job":
        return 1
    replicas = workload["spec"].get("replicas")
    if replicas is not None:
        return int(replicas)
    hpas = [
        h
        for h in rendering.of_kind("HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["name"] == workload["metadata"]["name"]
    ]
    assert hpas, f"{workload['metadata']['name']} sets no replicas and no HPA targets it"
    return int(hpas[0]["spec"]["minReplicas"])


def app_name(obj: dict[str, Any]) -> str:
    labels = obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
    return str(labels.get("app.kubernetes.io/name", obj["metadata"]["name"]))


def in_namespace(rendering: Rendering, namespace: str) -> str:
    """The rendering moved to another namespace (one API server holds every overlay at once); the
    node agent's namespace moves beside it, to ``<namespace>-agent``."""
    moved = {NAMESPACE: namespace, NODE_NAMESPACE: f"{namespace}-agent"}
    docs = []
    for original in rendering.objects:
        obj = yaml.safe_load(yaml.safe_dump(original))
        meta = obj["metadata"]
        if obj["kind"] == "Namespace":
            meta["name"] = moved.get(meta["name"], meta["name"])
        elif meta.get("namespace") in moved:
            meta["namespace"] = moved[meta["namespace"]]
        if obj["kind"] in {"ClusterRole", "ClusterRoleBinding"}:
            meta["name"] = f"{meta['name']}-{namespace}"
        if obj["kind"] == "ClusterRoleBinding":
            obj["roleRef"]["name"] = f"{obj['roleRef']['name']}-{namespace}"
        if obj["kind"] in {"ClusterRoleBinding", "RoleBinding"}:
            for subject in obj.get("subjects", []):
                if subject.get("namespace") in moved:
                    subject["namespace"] = moved[subject["namespace"]]
        docs.append(obj)
    return yaml.safe_dump_all(docs, sort_keys=False)
