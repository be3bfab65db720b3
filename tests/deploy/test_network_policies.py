"""Default deny, and one allow rule per real flow: every flow the configuration makes is allowed
at both ends, and every in-namespace ingress rule serves a real flow."""

from __future__ import annotations

import pytest

from tests.deploy.flows import allowed, flows, namespace_of, peer_selects, pod_labels, pod_namespaces, selects
from tests.deploy.render import OVERLAYS, Rendering


@pytest.fixture(params=OVERLAYS)
def rendering(request: pytest.FixtureRequest, renderings: dict[str, Rendering]) -> Rendering:
    return renderings[request.param]


def test_default_deny_covers_every_pod(rendering: Rendering) -> None:
    denies = {namespace_of(p): p["spec"] for p in rendering.of_kind("NetworkPolicy")
              if p["metadata"]["name"] == "default-deny-all"}
    assert set(denies) == set(pod_namespaces(rendering).values()), "a namespace with pods and no default deny"
    for deny in denies.values():
        assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
        assert "ingress" not in deny and "egress" not in deny


def test_the_expected_flows_are_found(renderings: dict[str, Rendering]) -> None:
    """The flow reader sees the flows the architecture names (so the next test is not vacuous)."""
    prod = flows(renderings["production"])
    assert {
        ("order", "payment", 50053),
        ("order", "identity", 50051),
        ("order", "identity", 8081),
        ("payment", "identity", 8081),
        ("order", "otel-collector", 4317),
        ("payment", "otel-collector", 4317),
        ("identity", "otel-collector", 4317),
        ("otel-collector", "order", 9102),
    } <= prod
    dev = flows(renderings["dev"])
    assert {
        ("order", "postgres", 5432),
        ("payment", "mongo", 27017),
        ("otel-collector", "jaeger", 4317),
        ("otel-collector", "elasticsearch", 9200),
        ("otel-collector", "prometheus", 9090),
        ("prometheus", "otel-collector", 8888),
    } <= dev
    # The collector scrapes the services; Prometheus only receives (remote write).
    assert not {flow for flow in dev if flow[0] == "prometheus" and flow[1] in {"identity", "order", "payment"}}


def test_every_flow_is_allowed_at_both_ends(rendering: Rendering) -> None:
    missing = []
    for flow in sorted(flows(rendering)):
        egress, ingress = allowed(rendering, flow)
        if not (egress and ingress):
            missing.append(f"{flow}: egress={'ok' if egress else 'DENIED'} ingress={'ok' if ingress else 'DENIED'}")
    assert not missing, "\n".join(missing)


def test_every_ingress_rule_serves_a_real_flow(rendering: Rendering) -> None:
    real = flows(rendering)
    labels, namespaces = pod_labels(rendering), pod_namespaces(rendering)
    extra = []
    for policy in rendering.of_kind("NetworkPolicy"):
        spec, where = policy["spec"], namespace_of(policy)
        callees = {app for app, lab in labels.items() if namespaces[app] == where and selects(spec["podSelector"], lab)}
        for rule in spec.get("ingress", []):
            for peer in rule.get("from", []):
                if "podSelector" not in peer:
                    continue  # a whole namespace: the edge (commented in the file)
                callers = {app for app, lab in labels.items() if peer_selects(peer, where, namespaces[app], lab)}
                if "namespaceSelector" in peer and not callers:
                    continue  # pods of a namespace the rendering does not hold: istiod (commented)
                assert callers, f"{policy['metadata']['name']}: a rule admits no pod of the rendering"
                for caller in callers:
                    for port in rule["ports"]:
                        if not any((caller, callee, port["port"]) in real for callee in callees):
                            extra.append(f"{policy['metadata']['name']}: {caller} -> :{port['port']}")
    assert not extra, "allowed but no configuration makes this call:\n" + "\n".join(extra)


def test_the_node_agent_reaches_only_the_gateway(rendering: Rendering) -> None:
    """The agent's one flow is OTLP to the gateway collector in the sagascope namespace, allowed at
    both ends across the namespaces; its namespace denies everything else by default."""
    agent_flows = {flow for flow in flows(rendering) if flow[0] == "otel-agent"}
    assert agent_flows == {("otel-agent", "otel-collector", 4317)}, agent_flows
    assert allowed(rendering, ("otel-agent", "otel-collector", 4317)) == (True, True)
    # Nothing else the agent could reach is open: not the services, not the backends.
    for app in pod_labels(rendering):
        for port in (4317, 4318, 8888, 9101, 9102, 9103, 9200, 50052):
            if (app, port) != ("otel-collector", 4317) and app != "otel-agent":
                assert allowed(rendering, ("otel-agent", app, port))[0] is False, (app, port)
    node = [p for p in rendering.of_kind("NetworkPolicy") if namespace_of(p) == pod_namespaces(rendering)["otel-agent"]]
    deny = [p["spec"] for p in node if p["metadata"]["name"] == "default-deny-all"]
    assert deny == [{"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}], node
    agent = [p["spec"] for p in node if p["metadata"]["name"] == "otel-agent"]
    assert agent and not agent[0].get("ingress"), "nothing may call the agent"
