"""components/istio: istioctl validates and analyses it with zero errors, and its policies say
what docs/kubernetes.md says — by ServiceAccount, by gRPC method, retries in one place only."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.cluster import Tools
from tests.deploy.flows import flows
from tests.deploy.render import APP, K8S, NAMESPACE, NODE_NAMESPACE, TEST_INPUTS, Rendering, minimum_replicas

ISTIO_OVERLAYS = ["dev-istio", "production-istio"]
# Istio's ingress gateway, installed by Istio's chart into this namespace (docs/kubernetes.md).
GATEWAY_SA = "istio-ingressgateway"


@pytest.fixture(params=ISTIO_OVERLAYS)
def rendering(request: pytest.FixtureRequest, renderings: dict[str, Rendering]) -> Rendering:
    return renderings[request.param]


def write(rendering: Rendering, tmp_path: Path) -> Path:
    path = tmp_path / f"{rendering.overlay}.yaml"
    path.write_text(rendering.text)
    return path


def test_istioctl_validate_accepts_the_rendering(tools: Tools, rendering: Rendering, tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(tools.istioctl), "validate", "-f", str(write(rendering, tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Error" not in proc.stdout + proc.stderr


def test_istioctl_analyze_finds_nothing(tools: Tools, rendering: Rendering, tmp_path: Path) -> None:
    proc = subprocess.run(
        # every namespace of the rendering: the application's and the node agent's
        [str(tools.istioctl), "analyze", "--use-kube=false", "--all-namespaces", str(write(rendering, tmp_path))],
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = proc.stdout + proc.stderr
    print(output)
    findings = [line for line in output.splitlines() if line.startswith(("Error", "Warning"))]
    assert not findings, output


def test_install_config_validates(tools: Tools) -> None:
    proc = subprocess.run(
        [str(tools.istioctl), "validate", "-f", str(K8S / "istio" / "install.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def principals(rendering: Rendering) -> dict[str, set[str]]:
    """AuthorizationPolicy name -> the principals its rules name."""
    found: dict[str, set[str]] = {}
    for policy in rendering.of_kind("AuthorizationPolicy"):
        for rule in policy["spec"].get("rules", []):
            for src in rule.get("from", []):
                found.setdefault(policy["metadata"]["name"], set()).update(src["source"].get("principals", []))
    return found


def test_principals_are_real_service_accounts(rendering: Rendering) -> None:
    accounts = {
        f"cluster.local/ns/{sa['metadata'].get('namespace', NAMESPACE)}/sa/{sa['metadata']['name']}"
        for sa in rendering.of_kind("ServiceAccount")
    } | {f"cluster.local/ns/{NAMESPACE}/sa/{GATEWAY_SA}"}
    for name, named in principals(rendering).items():
        for principal in named:
            assert principal.startswith((f"cluster.local/ns/{NAMESPACE}/", f"cluster.local/ns/{NODE_NAMESPACE}/")), (
                f"{name}: {principal}"
            )
            assert principal in accounts, f"{name}: no ServiceAccount for {principal}"


def test_only_order_may_call_payment_methods(rendering: Rendering) -> None:
    policies = [
        p
        for p in rendering.of_kind("AuthorizationPolicy")
        if p["spec"].get("selector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == "payment"
    ]
    assert policies and all(p["spec"].get("action", "ALLOW") == "ALLOW" for p in policies)
    method_rules = [
        rule
        for p in policies
        for rule in p["spec"]["rules"]
        if any(
            path.startswith("/sagascope.payments.v1.PaymentService/")
            for to in rule.get("to", [])
            for path in to["operation"].get("paths", [])
        )
    ]
    assert method_rules
    for rule in method_rules:
        assert [s["source"]["principals"] for s in rule["from"]] == [[f"cluster.local/ns/{NAMESPACE}/sa/order"]]
    payment_proto = (K8S.parents[1] / "protos/sagascope/payments/v1/payments.proto").read_text()
    for rule in method_rules:
        for to in rule["to"]:
            for path in to["operation"]["paths"]:
                assert f"rpc {path.rsplit('/', 1)[1]}(" in payment_proto, path


def test_every_service_has_mutual_tls_and_limits(rendering: Rendering) -> None:
    rules = {d["spec"]["host"]: d["spec"]["trafficPolicy"] for d in rendering.of_kind("DestinationRule")}
    for name in [*APP, "otel-collector"]:
        policy = rules[f"{name}.{NAMESPACE}.svc.cluster.local"]
        assert policy["tls"]["mode"] == "ISTIO_MUTUAL"
        assert policy["connectionPool"]["tcp"]["maxConnections"] > 0
    (peer,) = [p for p in rendering.of_kind("PeerAuthentication") if "selector" not in p["spec"]]
    assert peer["spec"]["mtls"]["mode"] == "STRICT"


def test_retries_happen_in_one_place(rendering: Rendering) -> None:
    """Istio retries twice by default; the app retries payment calls (ORDER_PAYMENT_MAX_ATTEMPTS).
    Each route to a service either leaves retrying to the app (attempts: 0) or the app gives up
    its own (ORDER_PAYMENT_MAX_ATTEMPTS=1)."""
    (order_config,) = [c for c in rendering.of_kind("ConfigMap") if c["metadata"]["name"] == "order-config"]
    app_attempts = int(order_config["data"]["ORDER_PAYMENT_MAX_ATTEMPTS"])
    routed = set()
    for vs in rendering.of_kind("VirtualService"):
        for route in vs["spec"]["http"]:
            mesh_attempts = route.get("retries", {}).get("attempts")
            assert mesh_attempts is not None, f"{vs['metadata']['name']}: Istio's default retries would apply"
            for dest in route["route"]:
                routed.add(dest["destination"]["host"])
                if dest["destination"]["host"].startswith("payment."):
                    assert mesh_attempts == 0 or app_attempts == 1, "retries multiply"
    assert {f"{n}.{NAMESPACE}.svc.cluster.local" for n in APP} <= routed


def test_sidecars_reach_what_their_workload_calls(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["dev-istio"]
    calls = flows(rendering)
    for sidecar in rendering.of_kind("Sidecar"):
        app = sidecar["spec"]["workloadSelector"]["labels"]["app.kubernetes.io/name"]
        # "./" is the Sidecar's own namespace; the node agent's names the gateway's namespace
        hosts = {
            h.removeprefix("./").removeprefix(f"{NAMESPACE}/") for e in sidecar["spec"]["egress"] for h in e["hosts"]
        }
        needed = {f"{callee}.{NAMESPACE}.svc.cluster.local" for caller, callee, _ in calls if caller == app}
        assert needed <= hosts, f"{app}: sidecar misses {needed - hosts}"
        extra = {h for h in hosts if h.endswith(f".{NAMESPACE}.svc.cluster.local")} - needed
        assert not extra, f"{app}: sidecar reaches what it never calls: {extra}"
        assert sidecar["spec"]["outboundTrafficPolicy"]["mode"] == "REGISTRY_ONLY"


def test_mesh_spans_go_to_our_collector() -> None:
    telemetry = yaml.safe_load((K8S / "components/istio/telemetry.yaml").read_text())
    install = yaml.safe_load((K8S / "istio/install.yaml").read_text())
    (provider,) = [p["name"] for t in telemetry["spec"]["tracing"] for p in t["providers"]]
    (defined,) = [p for p in install["spec"]["meshConfig"]["extensionProviders"] if p["name"] == provider]
    assert defined["opentelemetry"] == {"service": f"otel-collector.{NAMESPACE}.svc.cluster.local", "port": 4317}


def service_of(rendering: Rendering, host: str) -> dict[str, Any]:
    assert host.endswith(f".{NAMESPACE}.svc.cluster.local"), host
    return rendering.named("Service", host.split(".")[0])


def test_in_mesh_routes_send_each_port_to_itself(rendering: Rendering) -> None:
    """Istio applies a route without match.port to every port of the Service: a route that names a
    destination port must match that port, or the collector's /metrics scrapes land on gRPC."""
    checked = 0
    for vs in rendering.of_kind("VirtualService"):
        if vs["spec"].get("gateways"):
            continue  # the public routes: the gateway's own ports
        for host in vs["spec"]["hosts"]:
            for port in service_of(rendering, host)["spec"]["ports"]:
                # The first route that takes a request on this port (Istio's order).
                route = next(
                    r
                    for r in vs["spec"]["http"]
                    if not r.get("match") or any(m.get("port", port["port"]) == port["port"] for m in r["match"])
                )
                for dest in route["route"]:
                    sent_to = dest["destination"].get("port", {}).get("number", port["port"])
                    assert sent_to == port["port"], (
                        f"{vs['metadata']['name']}: a request to {host}:{port['port']} ({port['name']}) "
                        f"is routed to port {sent_to} (route {route.get('name', '?')})"
                    )
                    checked += 1
    assert checked >= len(APP) * 2


def test_outlier_detection_only_where_another_replica_takes_over(rendering: Rendering) -> None:
    """Envoy ejects at least one host whatever maxEjectionPercent says (and Istio's panic threshold
    is 0): on a single replica five errors take the only endpoint away. Outlier detection only for a
    workload with two replicas or more, kept there by a PodDisruptionBudget."""
    with_detection = set()
    for rule in rendering.of_kind("DestinationRule"):
        detection = rule["spec"].get("trafficPolicy", {}).get("outlierDetection")
        if not detection:
            continue
        service = service_of(rendering, rule["spec"]["host"])
        (deployment,) = [
            d
            for d in rendering.of_kind("Deployment")
            if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name")
            == service["spec"]["selector"]["app.kubernetes.io/name"]
        ]
        name = deployment["metadata"]["name"]
        assert minimum_replicas(rendering, deployment) >= 2, f"{name}: outlier detection can eject its only replica"
        pdbs = [
            p
            for p in rendering.of_kind("PodDisruptionBudget")
            if p["spec"]["selector"] == deployment["spec"]["selector"] and p["spec"].get("minAvailable", 0) >= 1
        ]
        assert pdbs, f"{name}: outlier detection without a PodDisruptionBudget keeping a replica"
        assert detection.get("maxEjectionPercent", 10) <= 50, name
        with_detection.add(name)
    # Still on where it protects something (the test is not vacuous).
    assert with_detection == {"order", "payment"}


def test_registry_only_sidecars_reach_registered_hosts(rendering: Rendering) -> None:
    """REGISTRY_ONLY refuses a host the mesh does not know: every host a Sidecar lists is a Service
    of the namespace or a ServiceEntry of the rendering (production's external backends)."""
    services = {f"{s['metadata']['name']}.{NAMESPACE}.svc.cluster.local" for s in rendering.of_kind("Service")}
    entries = {h for e in rendering.of_kind("ServiceEntry") for h in e["spec"]["hosts"]}
    for sidecar in rendering.of_kind("Sidecar"):
        assert sidecar["spec"]["outboundTrafficPolicy"]["mode"] == "REGISTRY_ONLY"
        for host in (h for e in sidecar["spec"]["egress"] for h in e["hosts"]):
            namespace, _, name = host.partition("/")
            if namespace == "istio-system" or host == "default/kubernetes.default.svc.cluster.local":
                continue
            assert namespace in (".", NAMESPACE), host
            assert name in services | entries, (
                f"{rendering.overlay}: Sidecar {sidecar['metadata']['name']}: {host} is in no registry"
            )


def test_production_mesh_reaches_each_external_backend(renderings: dict[str, Rendering]) -> None:
    """Each port the NetworkPolicies open to the outside (a rule with ports and no peer: the
    operator's databases and backends) has a ServiceEntry from backends.env, listed in the Sidecar
    of the workload that calls it."""
    rendering = renderings["production-istio"]
    configured = dict(line.split("=", 1) for line in TEST_INPUTS["overlays/production-istio/backends.env"].splitlines())
    entries = {
        (p["number"], h)
        for e in rendering.of_kind("ServiceEntry")
        for p in e["spec"]["ports"]
        for h in e["spec"]["hosts"]
    }
    assert {h for _, h in entries} == {v for k, v in configured.items() if k.endswith("_HOST")}
    # The databases' TCP entries match by address: the networks named in backends.env.
    addresses = {a for e in rendering.of_kind("ServiceEntry") for a in e["spec"].get("addresses", [])}
    assert addresses == {configured["POSTGRES_CIDR"], configured["MONGODB_CIDR"]}
    api_server = {443, 6443}  # the Kubernetes API: default/kubernetes in the Sidecar
    outside = {
        (app, port["port"])
        for policy in rendering.of_kind("NetworkPolicy")
        for app in policy["spec"]["podSelector"].get("matchLabels", {}).values()
        for rule in policy["spec"].get("egress", [])
        if "to" not in rule
        for port in rule.get("ports", [])
        if port["port"] not in api_server | {53}
    }
    assert outside == {
        ("order", 5432),
        ("payment", 27017),
        ("otel-collector", 4317),
        ("otel-collector", 9200),
        ("otel-collector", 9090),
    }
    sidecars = {
        s["spec"]["workloadSelector"]["labels"]["app.kubernetes.io/name"]: s for s in rendering.of_kind("Sidecar")
    }
    for app, port in sorted(outside):
        hosts = {h.removeprefix("./") for e in sidecars[app]["spec"]["egress"] for h in e["hosts"]}
        reachable = {h for p, h in entries if p == port} & hosts
        assert reachable, f"{app} -> :{port}: no ServiceEntry in its Sidecar's egress"


def test_the_node_agent_sends_in_mutual_tls_under_its_own_identity(rendering: Rendering) -> None:
    """The agent's namespace is injected, so its OTLP reaches the gateway's STRICT port 4317 in
    mutual TLS; the gateway's AuthorizationPolicy names its ServiceAccount."""
    namespaces = {n["metadata"]["name"]: n["metadata"]["labels"] for n in rendering.of_kind("Namespace")}
    assert namespaces[NODE_NAMESPACE].get("istio-injection") == "enabled"
    assert f"cluster.local/ns/{NODE_NAMESPACE}/sa/otel-agent" in principals(rendering)["otel-collector"]
    (sidecar,) = [s for s in rendering.of_kind("Sidecar") if s["metadata"].get("namespace") == NODE_NAMESPACE]
    assert {h for e in sidecar["spec"]["egress"] for h in e["hosts"]} == {
        f"{NAMESPACE}/otel-collector.{NAMESPACE}.svc.cluster.local",
        "istio-system/*",
    }
