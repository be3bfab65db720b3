"""The tools of the deploy tier and a real Kubernetes control plane run as local processes:
etcd, kube-apiserver (client-certificate auth, loopback, ephemeral ports) and
kube-controller-manager (so Deployments get ReplicaSets and Pods, namespaces their `default`
ServiceAccount, and the HorizontalPodAutoscaler its minimum)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagascope.local.supervisor import free_port
from tools.k8s_cluster.control_plane import (
    apiserver_command,
    controller_manager_command,
    etcd_command,
    write_kubeconfig,
)
from tools.k8s_cluster.pki import make_pki

REPO = Path(__file__).resolve().parents[2]
INSTALL_TOOLS = REPO / "scripts" / "k8s" / "install_tools.sh"


@dataclass(frozen=True)
class Tools:
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    etcd: Path
    kube_score: Path
    istioctl: Path
    istio_crds: Path
    sd_check: Path  # Prometheus' Kubernetes discovery + relabelling, once (scripts/k8s/sdcheck)


class ToolsUnavailable(RuntimeError):
    """A tool could not be built here; the message says which and why."""


def install_tools() -> Tools:
    """Build (first run) or find (cached) every tool; raises ToolsUnavailable with the build's words."""
    proc = subprocess.run(["bash", str(INSTALL_TOOLS)], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ToolsUnavailable(f"{INSTALL_TOOLS.relative_to(REPO)} failed (exit {proc.returncode}):\n{tail}")
    values = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    return Tools(
        kube_apiserver=Path(values["KUBE_APISERVER"]),
        kube_controller_manager=Path(values["KUBE_CONTROLLER_MANAGER"]),
        kubectl=Path(values["KUBECTL"]),
        etcd=Path(values["ETCD"]),
        kube_score=Path(values["KUBE_SCORE"]),
        istioctl=Path(values["ISTIOCTL"]),
        istio_crds=Path(values["ISTIO_CRDS"]),
        sd_check=Path(values["SD_CHECK"]),
    )


@dataclass
class ControlPlane:
    tools: Tools
    kubeconfig: Path
    workdir: Path

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.tools.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
        return proc

    def get(self, *args: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return result

    def wait_for(self, what: str, predicate: Any, timeout: float = 60.0) -> Any:
        """Poll ``predicate()`` until it returns something truthy; fail naming ``what``."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def _start(name: str, argv: list[str], logs: Path) -> subprocess.Popen[bytes]:
    log = (logs / f"{name}.log").open("wb")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _log_tail(logs: Path, name: str) -> str:
    path = logs / f"{name}.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-20:]) if path.exists() else ""


@contextmanager
def control_plane(tools: Tools, workdir: Path) -> Iterator[ControlPlane]:
    pki = make_pki(workdir / "pki")
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    etcd_port, peer_port, api_port, kcm_port = free_port(), free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    server = f"https://127.0.0.1:{api_port}"
    kubeconfig = workdir / "kubeconfig"
    write_kubeconfig(kubeconfig, server, pki)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(_start("etcd", etcd_command(tools.etcd, workdir / "etcd", etcd_port, peer_port), logs))
        apiserver = apiserver_command(
            tools.kube_apiserver,
            etcd_url=etcd_url,
            address="127.0.0.1",
            port=api_port,
            cert_dir=workdir / "apiserver-certs",
            pki=pki,
            service_cidr="10.96.0.0/16",
            # No `kubernetes` Service endpoints: they may not be loopback, and nothing here needs them.
            extra=("--endpoint-reconciler-type=none",),
        )
        procs.append(_start("kube-apiserver", apiserver, logs))
        plane = ControlPlane(tools, kubeconfig, workdir)

        def ready() -> bool:
            for proc, name in zip(procs, ["etcd", "kube-apiserver"], strict=True):
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited ({proc.returncode}):\n{_log_tail(logs, name)}")
            return plane.kubectl("get", "--raw", "/readyz", check=False).returncode == 0

        plane.wait_for("kube-apiserver /readyz", ready, timeout=120)
        controller_manager = controller_manager_command(
            tools.kube_controller_manager,
            kubeconfig=kubeconfig,
            port=kcm_port,
            cert_dir=workdir / "kcm-certs",
            pki=pki,
            extra=("--horizontal-pod-autoscaler-sync-period=2s",),
        )
        procs.append(_start("kube-controller-manager", controller_manager, logs))
        plane.wait_for(
            "the controller-manager's `default` ServiceAccount in namespace default",
            lambda: plane.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0,
            timeout=90,
        )
        yield plane
    finally:
        _stop(procs)
        if os.environ.get("SAGASCOPE_KEEP_K8S_WORKDIR") != "1":
            shutil.rmtree(workdir / "etcd", ignore_errors=True)


RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def create_restricted_namespace(cluster: ControlPlane, name: str) -> None:
    cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=sagascope-test",
        "-f",
        "-",
        stdin=(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "
            + name
            + "\n  labels:\n"
            + "".join(f"    {k}: {v}\n" for k, v in RESTRICTED.items())
        ),
    )
