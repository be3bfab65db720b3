"""The deploy tier (`make k8s-verify`): the Kubernetes and Istio manifests, rendered, checked and
applied to a real kube-apiserver. Its tools are built once from the Go module proxy
(scripts/k8s/install_tools.sh). If they cannot be built the tier says why and is skipped —
except where SAGASCOPE_REQUIRE_K8S=1 (.ci/run), where that is a failure."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.cluster import ControlPlane, Tools, ToolsUnavailable, control_plane, install_tools
from tests.deploy.render import OVERLAYS, TEST_INPUTS, Rendering, copy_tree, render


@pytest.fixture(scope="session")
def tools() -> Tools:
    try:
        return install_tools()
    except ToolsUnavailable as exc:
        if os.environ.get("SAGASCOPE_REQUIRE_K8S") == "1":
            pytest.fail(f"deploy tier required (SAGASCOPE_REQUIRE_K8S=1) but its tools are missing: {exc}")
        pytest.skip(f"deploy tier: tools unavailable: {exc}")


@pytest.fixture(scope="session")
def k8s_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/k8s with the production inputs a user provides (release.env, backends.env)."""
    return copy_tree(tmp_path_factory.mktemp("tree"), TEST_INPUTS)


@pytest.fixture(scope="session")
def renderings(tools: Tools, k8s_tree: Path) -> dict[str, Rendering]:
    return {overlay: render(tools.kubectl, overlay, k8s_tree) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def cluster(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    workdir: Path = tmp_path_factory.mktemp("k8s")
    with control_plane(tools, workdir) as plane:
        plane.kubectl("apply", "--server-side", "-f", str(tools.istio_crds))
        plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        yield plane
