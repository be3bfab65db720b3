"""Every overlay renders with plain `kubectl kustomize` (no --load-restrictor flag), the same
bytes every time, and the istio overlays are their plain overlay plus the mesh's objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.cluster import Tools
from tests.deploy.render import OVERLAYS, Rendering, render

ISTIO_KINDS = {
    "PeerAuthentication",
    "AuthorizationPolicy",
    "RequestAuthentication",
    "Gateway",
    "VirtualService",
    "DestinationRule",
    "Telemetry",
    "Sidecar",
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendering_is_deterministic(
    tools: Tools, renderings: dict[str, Rendering], k8s_tree: Path, overlay: str
) -> None:
    again = render(tools.kubectl, overlay, k8s_tree)
    assert again.text == renderings[overlay].text
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for obj in again.objects:
        want = None if obj["kind"] in cluster_scoped else "sagascope"
        assert obj["metadata"].get("namespace") == want, (obj["kind"], obj["metadata"]["name"])


@pytest.mark.parametrize("plain", ["dev", "production"])
def test_istio_overlay_adds_the_mesh_to_the_plain_one(renderings: dict[str, Rendering], plain: str) -> None:
    without, with_mesh = renderings[plain], renderings[f"{plain}-istio"]
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    added = {key(o) for o in with_mesh.objects} - {key(o) for o in without.objects}
    assert {kind for kind, _ in added} >= ISTIO_KINDS
    # Besides the mesh's own kinds: the ingress gateway's objects, NetworkPolicies and (production)
    # the external backends' ServiceEntries only.
    others = {(kind, name) for kind, name in added if kind not in ISTIO_KINDS | {"NetworkPolicy", "ServiceEntry"}}
    assert all(name.startswith("istio-ingressgateway") for _, name in others), others
    assert not {o["kind"] for o in without.objects} & ISTIO_KINDS
    (ns,) = with_mesh.of_kind("Namespace")
    assert ns["metadata"]["labels"]["istio-injection"] == "enabled"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
