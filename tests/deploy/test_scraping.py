"""The collector's prometheus receiver in Kubernetes (profiles/k8s.yml) scrapes every service Pod
on its own, with the collector's own permissions: Prometheus' Kubernetes discovery and relabelling
(scripts/k8s/sdcheck, the same library code the receiver runs) with the collector ServiceAccount's
token against the real API server, over the EndpointSlices the controller-manager builds for the
dev overlay's Pods, yields one target per Pod with the `job` the dashboards and rules use."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.cluster import ControlPlane, Tools, create_restricted_namespace
from tests.deploy.flows import data_of
from tests.deploy.render import APP, Rendering, in_namespace, minimum_replicas, pod_spec

NAMESPACE = "sagascope-scrape"
NODE = "sagascope-scrape-node"
COLLECTOR_SA = f"system:serviceaccount:{NAMESPACE}:otel-collector"
# The collector's own ${env:NAME:-default} and $$ (a literal $), resolved as it does with no env set.
ENV_REFERENCE = re.compile(r"\$\{env:[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}|\$\$")


def collector_scrape_config(rendering: Rendering) -> dict[str, Any]:
    """The scrape job the k8s profile gives the collector, as the collector reads it."""
    (c,) = pod_spec(rendering.named("Deployment", "otel-collector"))["containers"]
    files = [a.split("/")[-1] for a in c["args"] if a.startswith("--config=")]
    configs = data_of(rendering, "ConfigMap", "otel-collector-config")
    scrape: list[dict[str, Any]] | None = None
    for name in files:  # later files replace the list (maps merge, lists are replaced)
        text = ENV_REFERENCE.sub(lambda m: m.group(1) if m.group(0) != "$$" else "$", configs[name])
        found = (yaml.safe_load(text).get("receivers") or {}).get("prometheus", {}).get("config", {})
        scrape = found.get("scrape_configs", scrape)
    assert scrape is not None
    (job,) = scrape
    return job


@pytest.fixture(scope="module")
def running_pods(cluster: ControlPlane, renderings: dict[str, Rendering]) -> dict[str, list[dict[str, Any]]]:
    """The dev overlay applied, its service Pods bound to a Node object and given addresses as a
    scheduler and a kubelet would (neither runs here): app -> its Pods, once the EndpointSlice
    controller lists them (it skips a Pod whose Node does not exist)."""
    rendering = renderings["dev"]
    create_restricted_namespace(cluster, NAMESPACE)
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=in_namespace(rendering, NAMESPACE))
    cluster.kubectl(
        "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    )
    pods: dict[str, list[dict[str, Any]]] = {}
    next_ip = iter(range(10, 250))
    for app in APP:
        want = minimum_replicas(rendering, rendering.named("Deployment", app))
        items: list[dict[str, Any]] = cluster.wait_for(
            f"{want} pod(s) of {app}",
            lambda app=app, want=want: (
                found
                if len(found := cluster.get("pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/name={app}")["items"])
                >= want
                else None
            ),
        )
        for pod in items:
            name = pod["metadata"]["name"]
            binding = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name},
                "target": {"kind": "Node", "name": NODE},
            }
            cluster.kubectl(
                "create", "--raw", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}/binding", "-f", "-",
                stdin=json.dumps(binding),
            )  # fmt: skip
            ip = f"10.244.0.{next(next_ip)}"
            status = {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True"}],
            }
            cluster.kubectl(
                "patch", "pod", name, "-n", NAMESPACE, "--subresource=status",
                "--type=merge", "-p", json.dumps({"status": status}),
            )  # fmt: skip
            pod["status"] = status
        pods[app] = items

    def listed() -> bool:
        slices = cluster.get("endpointslices", "-n", NAMESPACE)["items"]
        addresses = {a for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]}
        return all(p["status"]["podIP"] in addresses for ps in pods.values() for p in ps)

    cluster.wait_for("every service Pod in its Service's EndpointSlice", listed, timeout=60)
    return pods


def test_the_collector_may_discover_in_its_namespace_only(cluster: ControlPlane, running_pods: Any) -> None:
    for resource in ("endpointslices.discovery.k8s.io", "services", "pods"):
        for verb in ("list", "watch"):
            proc = cluster.kubectl(
                "auth", "can-i", verb, resource, "-n", NAMESPACE, f"--as={COLLECTOR_SA}", check=False
            )
            assert proc.stdout.strip() == "yes", f"the collector may not {verb} {resource}: {proc.stdout}{proc.stderr}"
    other = cluster.kubectl(
        "auth", "can-i", "list", "endpointslices.discovery.k8s.io", "-n", "default", f"--as={COLLECTOR_SA}", check=False
    )
    assert other.stdout.strip() == "no", "the collector's discovery reaches beyond its namespace"


def test_discovery_finds_one_target_per_service_pod(
    tools: Tools, cluster: ControlPlane, renderings: dict[str, Rendering],
    running_pods: dict[str, list[dict[str, Any]]], tmp_path: Path,
) -> None:  # fmt: skip
    job = collector_scrape_config(renderings["dev"])
    # Outside a Pod there is no namespace file and no in-cluster credentials: name the namespace,
    # and give discovery the collector ServiceAccount's token (its permissions, not admin's).
    (sd,) = job["kubernetes_sd_configs"]
    assert sd.pop("namespaces") == {"own_namespace": True}
    sd["namespaces"] = {"names": [NAMESPACE]}
    sd["kubeconfig_file"] = str(collector_kubeconfig(cluster, tmp_path))
    config = tmp_path / "job.yaml"
    config.write_text(
        yaml.safe_dump({k: job[k] for k in ("job_name", "scheme", "kubernetes_sd_configs", "relabel_configs")})
    )
    proc = subprocess.run([str(tools.sd_check), str(config), "8"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "forbidden" not in proc.stderr, proc.stderr
    targets = [json.loads(line) for line in proc.stdout.splitlines()]
    print(json.dumps(targets, indent=1))
    ports = {"identity": 9101, "order": 9102, "payment": 9103}
    expected = {
        (f"{app}-service", f"{pod['status']['podIP']}:{ports[app]}", pod["metadata"]["name"])
        for app, pods in running_pods.items()
        for pod in pods
    }
    found = {(t["job"], t["instance"], t["pod"]) for t in targets}
    assert found == expected
    assert {t["namespace"] for t in targets} == {NAMESPACE}
    # Two order Pods, two series: what the Service address could never give.
    assert len({t["instance"] for t in targets if t["job"] == "order-service"}) == len(running_pods["order"]) >= 2


def collector_kubeconfig(cluster: ControlPlane, tmp_path: Path) -> Path:
    token = cluster.kubectl("create", "token", "otel-collector", "-n", NAMESPACE).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    (cluster_entry,) = admin["clusters"]
    config = {
        **admin,
        "users": [{"name": "otel-collector", "user": {"token": token}}],
        "contexts": [{"name": "collector", "context": {"cluster": cluster_entry["name"], "user": "otel-collector"}}],
        "current-context": "collector",
    }
    path = tmp_path / "collector.kubeconfig"
    path.write_text(json.dumps(config))
    return path
