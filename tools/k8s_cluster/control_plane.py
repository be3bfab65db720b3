"""The control plane's command lines and kubeconfig, shared by the admission tier's throwaway
control plane (tests/deploy/cluster.py) and the running cluster (tools/k8s_cluster/cluster.py):
etcd, kube-apiserver (client-certificate auth, RBAC) and kube-controller-manager."""

from __future__ import annotations

import json
from pathlib import Path

from tools.k8s_cluster.pki import Pki


def write_kubeconfig(path: Path, server: str, pki: Pki) -> None:
    """An admin kubeconfig (client certificate in system:masters) for ``server``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sagascope", "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)}}],
        "users": [
            {"name": "admin", "user": {"client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)}}
        ],
        "contexts": [{"name": "sagascope", "context": {"cluster": "sagascope", "user": "admin"}}],
        "current-context": "sagascope",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


def etcd_command(etcd: Path, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    url = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    return [
        str(etcd),
        f"--data-dir={data_dir}",
        f"--listen-client-urls={url}",
        f"--advertise-client-urls={url}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--unsafe-no-fsync",  # a throwaway store; the machine's disk is shared
        "--log-level=warn",
    ]


def apiserver_command(
    binary: Path,
    *,
    etcd_url: str,
    address: str,
    port: int,
    cert_dir: Path,
    pki: Pki,
    service_cidr: str,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """kube-apiserver bound to ``address`` (also advertised), RBAC, client certificates only."""
    return [
        str(binary),
        f"--etcd-servers={etcd_url}",
        f"--bind-address={address}",
        f"--advertise-address={address}",
        # As real clusters (kubeadm, kind) run: privileged pods are allowed by the server
        # and refused by Pod Security admission per namespace.
        "--allow-privileged=true",
        f"--secure-port={port}",
        f"--cert-dir={cert_dir}",
        f"--tls-cert-file={pki.server_cert}",
        f"--tls-private-key-file={pki.server_key}",
        f"--client-ca-file={pki.ca_cert}",
        "--anonymous-auth=false",
        "--authorization-mode=RBAC",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={pki.sa_public}",
        f"--service-account-signing-key-file={pki.sa_private}",
        f"--service-cluster-ip-range={service_cidr}",
        "--profiling=false",
        "--v=1",
        *extra,
    ]


def controller_manager_command(
    binary: Path, *, kubeconfig: Path, port: int, cert_dir: Path, pki: Pki, extra: tuple[str, ...] = ()
) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={cert_dir}",
        f"--service-account-private-key-file={pki.sa_private}",
        f"--root-ca-file={pki.ca_cert}",
        # Its default is /usr/libexec/kubernetes/...; created at start, it would outlive the cluster.
        f"--flex-volume-plugin-dir={cert_dir.parent / 'flexvolume'}",
        "--use-service-account-credentials=false",
        "--leader-elect=false",
        "--v=1",
        *extra,
    ]
