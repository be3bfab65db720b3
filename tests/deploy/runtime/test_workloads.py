"""Every workload of the dev overlay rolls out and every Pod becomes Ready through its own probes,
in a namespace that enforces Pod Security `restricted`; a container's user and read-only root
are what the manifests ask, checked from inside."""

from __future__ import annotations

from typing import Any

from tests.deploy.runtime.conftest import dump, pod_names
from tests.deploy.runtime.kube import NAMESPACE, Kube


def test_the_namespace_enforces_restricted(kube: Kube, deployed: list[dict[str, Any]]) -> None:
    labels = kube.get("namespace", NAMESPACE, namespace=NAMESPACE)["metadata"]["labels"]
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted", labels


def test_every_workload_is_available_and_every_pod_ready_through_its_probes(
    kube: Kube, deployed: list[dict[str, Any]]
) -> None:
    expected = {o["metadata"]["name"]: o for o in deployed if o["kind"] in ("Deployment", "StatefulSet")}
    for name, obj in expected.items():
        live = kube.get(obj["kind"].lower(), name)
        want = live["spec"].get("replicas", 1)
        assert live["status"].get("readyReplicas", 0) == want, f"{obj['kind']}/{name}: {dump(live['status'])}"
    # The node agent: one Ready Pod on every node, in its own namespace.
    for obj in (o for o in deployed if o["kind"] == "DaemonSet"):
        live = kube.get("daemonset", obj["metadata"]["name"], namespace=obj["metadata"]["namespace"])
        status = live["status"]
        assert status.get("desiredNumberScheduled", 0) >= 1, dump(status)
        assert status.get("numberReady") == status["desiredNumberScheduled"], dump(status)
    pods = [p for p in kube.get("pods")["items"] if p["status"].get("phase") != "Succeeded"]
    assert pods
    not_ready, unprobed = [], []
    for pod in pods:
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        if conditions.get("Ready") != "True":
            not_ready.append(pod["metadata"]["name"])
        for container in pod["spec"]["containers"]:
            if "readinessProbe" not in container:
                unprobed.append(f"{pod['metadata']['name']}/{container['name']}")
    assert not not_ready, f"pods not Ready: {not_ready}"
    assert not unprobed, f"containers Ready without a readiness probe of their own: {unprobed}"


def test_the_job_completed(kube: Kube, deployed: list[dict[str, Any]]) -> None:
    for job in (o for o in deployed if o["kind"] == "Job"):
        name = job["metadata"]["name"]
        proc = kube.kubectl("-n", NAMESPACE, "wait", "--for=condition=complete", f"job/{name}", "--timeout=300s",
                            check=False, timeout=330)
        logs = kube.kubectl("-n", NAMESPACE, "logs", f"job/{name}", "--tail=20", check=False).stdout
        assert proc.returncode == 0, f"job/{name} did not complete: {dump(kube.get('job', name)['status'])}\n{logs}"


def test_a_service_container_runs_as_10001_with_a_read_only_root(kube: Kube, deployed: list[dict[str, Any]]) -> None:
    pod = pod_names(kube, "order")[0]
    probe = (
        "import os\n"
        "print('uid', os.getuid(), 'gid', os.getgid())\n"
        "try:\n    open('/probe-write', 'w')\nexcept OSError as exc:\n    print('root write:', exc.strerror)\n"
        "else:\n    print('root write: allowed')\n"
        "open('/tmp/probe-write', 'w').write('x'); print('tmp write: allowed')\n"
    )
    proc = kube.exec(pod, "python", "-c", probe)
    assert proc.returncode == 0, proc.stderr
    assert "uid 10001 gid 10001" in proc.stdout, proc.stdout
    assert "root write: Read-only file system" in proc.stdout, proc.stdout
    assert "tmp write: allowed" in proc.stdout, proc.stdout  # the emptyDir the manifest mounts
