"""The test overlay (deploy/k8s/overlays/dev-local) is the dev overlay with images built here.

The runtime tier runs dev-local because no registry is reachable; what it proves holds for dev
only if nothing else differs. Both are rendered with the built kubectl and compared object by
object: only container images and the Grafana/Kibana replica counts (no image of either can be
had here) may differ, and the local image tags are the ones .env pins for
scripts/k8s/build_images.sh.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest

from tests.deploy.images import CACHE
from tests.deploy.render import WORKLOAD_KINDS, Rendering, pod_spec, render
from tests.deploy.test_manifests import ENV

LOCAL = "localhost/sagascope/"
SCALED_TO_ZERO = {"grafana", "kibana"}
# Image name (after localhost/sagascope/) -> the tag build_images.sh gives it.
LOCAL_TAGS = {
    "service": "dev",
    "elk-setup": "dev",
    "postgres": ENV["K8S_IMAGES_POSTGRES_MAJOR"],
    "nx-27017": ENV["NX27017_VERSION"],
    "jaeger": ENV["JAEGER_VERSION"],
    "otelcol": ENV["OTELCOL_VERSION"],
    "elasticsearch": ENV["ELASTIC_VERSION"],
    "prometheus": ENV["K8S_IMAGES_PROMETHEUS_VERSION"],
}

Key = tuple[str, str, str]


@pytest.fixture(scope="module")
def pair() -> tuple[Rendering, Rendering]:
    # Only kubectl is needed: the one scripts/k8s/build_control_plane.sh caches by version.
    kubectl = CACHE / f"k8s-{ENV['KUBERNETES_VERSION']}" / "kubectl"
    if not kubectl.is_file():
        why = f"{kubectl} is not built (make k8s-tools)"
        if os.environ.get("SAGASCOPE_REQUIRE_K8S") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return render(kubectl, "dev"), render(kubectl, "dev-local")


def by_key(rendering: Rendering) -> dict[Key, dict[str, Any]]:
    return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in rendering.objects}


def all_containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] not in WORKLOAD_KINDS:
        return []
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def without_allowed_differences(obj: dict[str, Any]) -> dict[str, Any]:
    """The object with its images blanked and, for Grafana/Kibana, its replica count."""
    obj = copy.deepcopy(obj)
    for container in all_containers(obj):
        container["image"] = "<image>"
    if obj["kind"] == "Deployment" and obj["metadata"]["name"] in SCALED_TO_ZERO:
        obj["spec"].pop("replicas", None)
    return obj


def test_dev_local_differs_from_dev_only_in_images_and_two_replica_counts(
    pair: tuple[Rendering, Rendering],
) -> None:
    dev, local = (by_key(r) for r in pair)
    assert sorted(local) == sorted(dev), "dev-local must render exactly dev's objects"
    differing = [key for key in dev if without_allowed_differences(dev[key]) != without_allowed_differences(local[key])]
    assert not differing, f"dev-local changes more than images and the Grafana/Kibana replicas: {differing}"


def test_grafana_and_kibana_are_scaled_to_zero_only_in_dev_local(pair: tuple[Rendering, Rendering]) -> None:
    dev, local = pair
    for name in SCALED_TO_ZERO:
        assert dev.named("Deployment", name)["spec"]["replicas"] >= 1
        assert local.named("Deployment", name)["spec"]["replicas"] == 0


def test_every_running_container_uses_an_image_built_here_with_the_pinned_tag(
    pair: tuple[Rendering, Rendering],
) -> None:
    _, local = pair
    used: dict[str, str] = {}
    for workload in local.workloads():
        if workload["metadata"]["name"] in SCALED_TO_ZERO:
            continue
        for container in all_containers(workload):
            image = container["image"]
            assert image.startswith(LOCAL), f"{workload['metadata']['name']}: {image} is not built here"
            name, _, tag = image.removeprefix(LOCAL).partition(":")
            assert LOCAL_TAGS.get(name) == tag, f"{image}: build_images.sh tags {name} as {LOCAL_TAGS.get(name)}"
            used[name] = tag
    assert set(used) == set(LOCAL_TAGS), (
        f"images built but not used, or used but not built: {set(used) ^ set(LOCAL_TAGS)}"
    )
