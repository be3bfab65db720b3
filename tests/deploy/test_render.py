"""Every overlay renders with plain `kubectl kustomize` (no --load-restrictor flag), the same
bytes every time, and the istio overlays are their plain overlay plus the mesh's objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.cluster import Tools
from tests.deploy.render import NODE_NAMESPACE, OVERLAYS, Rendering, render

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
    node_objects = set()
    for obj in again.objects:
        namespace, name = obj["metadata"].get("namespace"), obj["metadata"]["name"]
        if obj["kind"] in cluster_scoped:
            assert namespace is None, (obj["kind"], name)
        elif namespace == NODE_NAMESPACE:
            node_objects.add((obj["kind"], name.rsplit("-", 1)[0] if obj["kind"] == "ConfigMap" else name))
        else:
            assert namespace == "sagascope", (obj["kind"], name)
    # Only the node agent's own objects live in its namespace (base/otel-agent.yaml says why).
    assert ("DaemonSet", "otel-agent") in node_objects
    assert {name for _, name in node_objects} <= {"otel-agent", "otel-agent-config", "default-deny-all", "allow-istiod"}


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
    namespaces = {n["metadata"]["name"]: n["metadata"]["labels"] for n in with_mesh.of_kind("Namespace")}
    assert set(namespaces) == {"sagascope", NODE_NAMESPACE}
    assert all(labels["istio-injection"] == "enabled" for labels in namespaces.values())
    assert namespaces["sagascope"]["pod-security.kubernetes.io/enforce"] == "restricted"
