"""Versions pinned in the repository's .env (the environment wins), and the binaries built from them."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tools.k8s_cluster.layout import REPO

INSTALL = REPO / "scripts" / "k8s" / "install_cluster_tools.sh"


def env_value(key: str) -> str:
    if os.environ.get(key):
        return os.environ[key]
    for line in (REPO / ".env").read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1].strip()
    raise KeyError(f"{key} is not set in {REPO / '.env'}")


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubelet: Path
    kube_proxy: Path
    kubectl: Path
    etcd: Path
    coredns: Path
    kube_router: Path


def binaries() -> Binaries:
    """Build (first run, cached by version in $SAGASCOPE_CACHE) or find every binary the cluster runs."""
    # The builds' progress (minutes, the first time) goes to our stderr as it happens.
    proc = subprocess.run(["bash", str(INSTALL)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{INSTALL.relative_to(REPO)} failed (exit {proc.returncode}); its output is above")
    values = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    k8s = Path(values["K8S_DIR"])
    return Binaries(
        kube_apiserver=k8s / "kube-apiserver",
        kube_controller_manager=k8s / "kube-controller-manager",
        kube_scheduler=k8s / "kube-scheduler",
        kubelet=k8s / "kubelet",
        kube_proxy=k8s / "kube-proxy",
        kubectl=k8s / "kubectl",
        etcd=Path(values["ETCD"]),
        coredns=Path(values["COREDNS"]),
        kube_router=Path(values["KUBE_ROUTER"]),
    )
