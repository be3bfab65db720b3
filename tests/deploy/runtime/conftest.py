"""The runtime deploy tier (`make k8s-run-verify`): the dev overlay, through the test overlay
deploy/k8s/overlays/dev-local (third-party images swapped for ones built here, Grafana and Kibana
scaled to zero), running on the cluster `make k8s-up` started, with the images `make k8s-images`
loaded. Without a cluster the tier is skipped, saying why — except with
SAGASCOPE_REQUIRE_K8S_RUNTIME=1 (.ci/run), where that is a failure."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.deploy.runtime.kube import NAMESPACE, Kube, wait_for
from tools.k8s_cluster import cluster, images
from tools.k8s_cluster.layout import REPO, Layout
from tools.k8s_cluster.versions import binaries

OVERLAY = REPO / "deploy" / "k8s" / "overlays" / "dev-local"
REQUIRED = os.environ.get("SAGASCOPE_REQUIRE_K8S_RUNTIME") == "1"
ROLLOUT_SECONDS = float(os.environ.get("SAGASCOPE_K8S_ROLLOUT_SECONDS", "600"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The first test also waits for the overlay to roll out; the disruption tests run for minutes.
    for item in items:
        if "deploy/runtime/" in str(item.fspath):
            item.add_marker(pytest.mark.timeout(ROLLOUT_SECONDS + 600))


def unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"runtime deploy tier required (SAGASCOPE_REQUIRE_K8S_RUNTIME=1): {reason}")
    pytest.skip(f"runtime deploy tier: {reason}")


@pytest.fixture(scope="session")
def kube() -> Kube:
    layout = Layout.default()
    if not cluster.running(layout) or cluster.status_text(layout) != cluster.READY:
        unavailable(f"no cluster is up (status: {cluster.status_text(layout)}); `make k8s-up` starts one")
    if not OVERLAY.is_dir():
        unavailable(f"{OVERLAY.relative_to(REPO)} is missing")
    return Kube(binaries().kubectl, layout)


def _rendered(kube: Kube) -> list[dict[str, Any]]:
    out = kube.kubectl("kustomize", str(OVERLAY)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _missing_images(kube: Kube, objects: list[dict[str, Any]]) -> list[str]:
    wanted = set()
    for obj in objects:
        if obj.get("spec", {}).get("replicas") == 0:
            continue  # scaled to zero in dev-local (Grafana, Kibana): never pulled
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            wanted.add(container["image"])
    have = images.imported(kube.layout)
    return sorted(w for w in wanted if w not in have and f"docker.io/library/{w}" not in have)


@pytest.fixture(scope="session")
def deployed(kube: Kube) -> Iterator[list[dict[str, Any]]]:
    """The overlay applied, and every Deployment, StatefulSet and the Job rolled out."""
    objects = _rendered(kube)
    missing = _missing_images(kube, objects)
    if missing:
        unavailable(f"images not in the cluster's containerd: {missing}; `make k8s-images` builds and loads them")
    started = time.monotonic()
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(OVERLAY), timeout=300)
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]
    for obj in workloads:
        kind, name = obj["kind"].lower(), obj["metadata"]["name"]
        where = obj["metadata"].get("namespace", NAMESPACE)  # the node agent has its own
        left = max(30.0, ROLLOUT_SECONDS - (time.monotonic() - started))
        proc = kube.kubectl("-n", where, "rollout", "status", f"{kind}/{name}", f"--timeout={left:.0f}s",
                            check=False, timeout=left + 30)
        if proc.returncode != 0:
            pods = kube.kubectl("-n", where, "get", "pods", "-o", "wide", check=False).stdout
            events = kube.kubectl("-n", where, "get", "events", "--sort-by=.lastTimestamp", check=False).stdout
            raise AssertionError(f"{kind}/{name} did not roll out:\n{proc.stderr}{proc.stdout}\n{pods}\n"
                                 f"{events[-4000:]}")
    print(f"\n[k8s] dev-local rolled out in {time.monotonic() - started:.0f}s")
    yield objects


def pod_names(kube: Kube, app: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in kube.pods(f"app.kubernetes.io/name={app}")
                  if p["metadata"].get("deletionTimestamp") is None)


def ready_pods(kube: Kube, app: str, count: int, timeout: float = 180) -> list[str]:
    def probe() -> list[str] | None:
        ready = [p["metadata"]["name"] for p in kube.pods(f"app.kubernetes.io/name={app}")
                 if p["metadata"].get("deletionTimestamp") is None
                 and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
        return sorted(ready) if len(ready) >= count else None

    return wait_for(f"{count} Ready {app} pods", probe, timeout)


def dump(obj: object) -> str:
    return json.dumps(obj, indent=1)[:3000]
