"""Every rendering applied server-side to a real kube-apiserver: every object accepted under
strict field validation, and the Pods the controllers create admitted under Pod Security
"restricted". A wrong manifest fails with the API server's own words."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.deploy.cluster import ControlPlane, create_restricted_namespace
from tests.deploy.render import OVERLAYS, Rendering, in_namespace, minimum_replicas


def workload_failure(cluster: ControlPlane, namespace: str, workload: dict[str, Any]) -> str:
    """Why a workload's controller could not create its Pods (the admission message), if it said."""
    events = cluster.get("events", "-n", namespace)["items"]
    return "\n".join(e.get("message", "") for e in events if e.get("reason") in {"FailedCreate"})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendering_is_accepted_and_its_pods_admitted(
    cluster: ControlPlane, renderings: dict[str, Rendering], overlay: str
) -> None:
    rendering = renderings[overlay]
    namespace = f"sagascope-{overlay}"
    create_restricted_namespace(cluster, namespace)
    applied = cluster.kubectl(
        "apply",
        "--server-side",
        "--validate=strict",
        "--field-manager=sagascope-test",
        "-f",
        "-",
        stdin=in_namespace(rendering, namespace),
    )
    lines = [line for line in applied.stdout.splitlines() if line.strip()]
    assert len(lines) == len(rendering.objects), applied.stdout
    assert all(line.endswith("serverside-applied") for line in lines), applied.stdout
    assert "Warning" not in applied.stderr, applied.stderr

    for workload in rendering.workloads():
        name, kind = workload["metadata"]["name"], workload["kind"]
        if kind == "DaemonSet":
            continue  # no Node here to place its Pod on: test_node_agent_pod_is_admitted_only_where_privileged
        want = minimum_replicas(rendering, workload)
        selector = (
            ",".join(f"{k}={v}" for k, v in workload["spec"]["selector"]["matchLabels"].items())
            if kind != "Job"
            else f"job-name={name}"
        )

        def pods(selector: str = selector, want: int = want) -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = cluster.get("pods", "-n", namespace, "-l", selector)["items"]
            return items if len(items) >= want else None

        try:
            created = cluster.wait_for(f"{want} pod(s) of {kind} {name}", pods, timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\ncontroller said: {workload_failure(cluster, namespace, workload)}") from None
        for pod in created:
            # The Pod object exists, so Pod Security admission let it in; check the pod is ours.
            assert pod["spec"]["serviceAccountName"] == workload["spec"]["template"]["spec"].get(
                "serviceAccountName", "default"
            )


def test_hpa_holds_order_at_two_replicas(cluster: ControlPlane, renderings: dict[str, Rendering]) -> None:
    """The Deployment sets no replicas; the HPA controller raises it to minReplicas (2)."""
    namespace = "sagascope-production"
    if cluster.kubectl("get", "namespace", namespace, check=False).returncode != 0:
        create_restricted_namespace(cluster, namespace)
        cluster.kubectl("apply", "--server-side", "-f", "-", stdin=in_namespace(renderings["production"], namespace))
    cluster.wait_for(
        "order Deployment scaled to 2 by its HPA",
        lambda: cluster.get("deployment", "order", "-n", namespace)["spec"].get("replicas") == 2,
        timeout=60,
    )


def test_typo_field_is_refused_with_the_servers_message(cluster: ControlPlane) -> None:
    create_restricted_namespace(cluster, "sagascope-typo")
    manifest = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: typo, namespace: sagascope-typo}
spec:
  replica: 2
  selector: {matchLabels: {app: typo}}
  template:
    metadata: {labels: {app: typo}}
    spec:
      containers: [{name: c, image: sagascope/service:dev}]
"""
    proc = cluster.kubectl("apply", "--server-side", "--validate=strict", "-f", "-", stdin=manifest, check=False)
    assert proc.returncode != 0
    print(f"API server refused the typo: {proc.stderr.strip()}")
    assert re.search(r'unknown field "spec\.replica"|field not declared in schema', proc.stderr), proc.stderr


def test_privileged_container_is_refused_by_admission(cluster: ControlPlane) -> None:
    create_restricted_namespace(cluster, "sagascope-privileged")
    manifest = """
apiVersion: v1
kind: Pod
metadata: {name: privileged, namespace: sagascope-privileged}
spec:
  containers:
    - name: c
      image: sagascope/service:dev
      securityContext: {privileged: true}
"""
    proc = cluster.kubectl("apply", "--server-side", "-f", "-", stdin=manifest, check=False)
    assert proc.returncode != 0
    print(f"API server refused the privileged pod: {proc.stderr.strip()}")
    assert 'violates PodSecurity "restricted:latest"' in proc.stderr, proc.stderr
    assert "privileged" in proc.stderr


def test_unhardened_deployment_gets_no_pods(cluster: ControlPlane) -> None:
    """Pod Security judges Pods, not Deployments: the object is accepted, its Pods are not —
    which is why the tier runs the controller-manager and counts Pods."""
    namespace = "sagascope-unhardened"
    create_restricted_namespace(cluster, namespace)
    manifest = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: plain, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: plain}}}}
  template:
    metadata: {{labels: {{app: plain}}}}
    spec:
      containers: [{{name: c, image: sagascope/service:dev}}]
"""
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=manifest)
    message = cluster.wait_for(
        "the ReplicaSet's FailedCreate event",
        lambda: workload_failure(cluster, namespace, {}),
        timeout=60,
    )
    assert 'violates PodSecurity "restricted:latest"' in message, message
    assert cluster.get("pods", "-n", namespace)["items"] == []


def _namespace_at(cluster: ControlPlane, name: str, level: str) -> None:
    labels = {"pod-security.kubernetes.io/enforce": level, "pod-security.kubernetes.io/enforce-version": "latest"}
    cluster.kubectl("apply", "--server-side", "--field-manager=sagascope-test", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}))


def test_node_agent_pod_is_admitted_only_where_privileged(
    cluster: ControlPlane, renderings: dict[str, Rendering]
) -> None:
    """The agent DaemonSet's Pod, as its controller would create it on a node, is admitted in its own
    namespace (as rendered, Pod Security "privileged"), and refused for its /var/log/pods hostPath
    under "baseline" and "restricted" — why it has a namespace of its own. Server-side dry runs:
    the API server's admission decides, no Node is needed."""
    namespace = "sagascope-admit"
    node = f"{namespace}-agent"
    docs = [d for d in yaml.safe_load_all(in_namespace(renderings["dev"], namespace)) if d]
    own = [d for d in docs
           if d["metadata"].get("namespace") == node or (d["kind"] == "Namespace" and d["metadata"]["name"] == node)]
    applied = cluster.kubectl(
        "apply", "--server-side", "--validate=strict", "--field-manager=sagascope-test", "-f", "-",
        stdin=yaml.safe_dump_all(own),
    )
    assert "Warning" not in applied.stderr, applied.stderr
    (daemonset,) = [d for d in own if d["kind"] == "DaemonSet"]
    account = daemonset["spec"]["template"]["spec"]["serviceAccountName"]

    def pod_in(where: str) -> str:
        return json.dumps({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "otel-agent-admission", "namespace": where,
                         "labels": daemonset["spec"]["template"]["metadata"]["labels"]},
            "spec": daemonset["spec"]["template"]["spec"],
        })

    admitted = cluster.kubectl("create", "--dry-run=server", "-f", "-", stdin=pod_in(node), check=False)
    assert admitted.returncode == 0, admitted.stderr
    assert "Warning" not in admitted.stderr, admitted.stderr
    for level in ("baseline", "restricted"):
        where = f"{namespace}-{level}"
        _namespace_at(cluster, where, level)
        cluster.kubectl("create", "serviceaccount", account, "-n", where)
        refused = cluster.kubectl("create", "--dry-run=server", "-f", "-", stdin=pod_in(where), check=False)
        print(f"{level}: {refused.stderr.strip()}")
        assert refused.returncode != 0
        assert f'violates PodSecurity "{level}:latest"' in refused.stderr, refused.stderr
        assert "hostPath" in refused.stderr, refused.stderr
