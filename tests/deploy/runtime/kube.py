"""kubectl against the cluster `make k8s-up` started, and the few things the runtime tests do
with it: read objects, wait, exec, run a one-shot probe Pod, and reach a Service by its cluster
DNS name from this host (CoreDNS answers; kube-proxy's rules carry the host to the Service)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tools.k8s_cluster import dns
from tools.k8s_cluster.layout import Layout

T = TypeVar("T")
NAMESPACE = "sagascope"


@dataclass(frozen=True)
class Kube:
    kubectl_path: Path
    layout: Layout

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True,
                timeout: float = 180) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.layout.kubeconfig), *args],
            input=stdin, capture_output=True, text=True, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
        return proc

    def get(self, *args: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.kubectl("-n", namespace, "get", *args, "-o", "json").stdout)
        return result

    def pods(self, selector: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("pods", "-l", selector, namespace=namespace)["items"]
        return items

    def exec(self, pod: str, *command: str, container: str | None = None) -> subprocess.CompletedProcess[str]:
        which = ("-c", container) if container else ()
        return self.kubectl("-n", NAMESPACE, "exec", pod, *which, "--", *command, check=False)

    def service_address(self, name: str, port: int, namespace: str = NAMESPACE) -> str:
        """``IP:port`` of a Service, found by asking the cluster DNS for its name."""
        fqdn = f"{name}.{namespace}.svc.{self.layout.network.cluster_domain}"
        found = dns.resolve(self.layout.network.dns_service_ip, fqdn)
        assert found, f"the cluster DNS ({self.layout.network.dns_service_ip}) has no A record for {fqdn}"
        return f"{found[0]}:{port}"

    def url(self, name: str, port: int, path: str = "") -> str:
        return f"http://{self.service_address(name, port)}{path}"


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 120, every: float = 2) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {str(last)[:2000]})")


def restricted_pod(name: str, image: str, command: list[str], labels: dict[str, str]) -> dict[str, Any]:
    """A one-shot Pod the `restricted` Pod Security level admits (non-root, read-only root, no caps)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "probe",
                "image": image,
                "imagePullPolicy": "Never",
                "command": command,
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }


def run_pod(kube: Kube, pod: dict[str, Any], timeout: float = 90) -> tuple[str, str]:
    """Create the Pod, wait until it ends, return (phase, its log); the Pod is deleted after."""
    name = pod["metadata"]["name"]
    kube.kubectl("-n", NAMESPACE, "delete", "pod", name, "--ignore-not-found", "--wait=true")
    kube.kubectl("-n", NAMESPACE, "create", "-f", "-", stdin=json.dumps(pod))
    try:
        phase = wait_for(f"pod {name} to finish", lambda: (
            p if (p := kube.get("pod", name)["status"].get("phase")) in ("Succeeded", "Failed") else None), timeout)
        log = kube.kubectl("-n", NAMESPACE, "logs", name, check=False).stdout
        return phase, log
    finally:
        kube.kubectl("-n", NAMESPACE, "delete", "pod", name, "--ignore-not-found", "--wait=false", check=False)
