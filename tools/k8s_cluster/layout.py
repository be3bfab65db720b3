"""Where the cluster keeps its files and which addresses it uses — defined once.

The state directory, the kubeconfig and the containerd socket are a contract with other tools
(`python -m tools.k8s_cluster env`): the image builder imports into this containerd, the runtime
tests read this kubeconfig. Addresses are private and local: the Pods' bridge carries the node's
only cluster address, so Pods reach the API server and nothing reaches past the machine.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Network:
    bridge: str = "sgk8s0"
    cni_name: str = "sagascope-k8s"
    cluster_cidr: str = "10.244.0.0/16"  # what the controller-manager carves node ranges from
    pod_cidr: str = "10.244.0.0/24"  # this node's range (the controller-manager's first /24)
    node_ip: str = "10.244.0.1"  # the bridge's address: the API server, kubelet and gateway
    service_cidr: str = "10.96.0.0/16"
    kubernetes_service_ip: str = "10.96.0.1"
    dns_service_ip: str = "10.96.0.10"
    cluster_domain: str = "cluster.local"

    @property
    def node_prefix(self) -> int:
        return ipaddress.ip_network(self.pod_cidr).prefixlen


@dataclass(frozen=True)
class Ports:
    """Fixed ports, chosen away from the local stack's (5005x, 8081, 91xx, 4317, 9090, 9200...)."""

    etcd_client: int = 23790
    etcd_peer: int = 23800
    apiserver: int = 6443  # on the node address only
    controller_manager: int = 10257
    scheduler: int = 10259
    kubelet: int = 10250  # on the node address
    kubelet_healthz: int = 10248
    kube_proxy_healthz: int = 10256
    kube_proxy_metrics: int = 10249
    kube_router_health: int = 20244
    kube_router_metrics: int = 20245


@dataclass(frozen=True)
class Layout:
    state: Path  # everything persistent the cluster makes (removed by `down`)
    run: Path  # sockets and runtime state (removed by `down`)
    node_name: str = "sagascope-node"
    network: Network = Network()
    ports: Ports = Ports()

    @classmethod
    def default(cls) -> Layout:
        return cls(
            state=Path(os.environ.get("SAGASCOPE_K8S_STATE", "/var/lib/sagascope-k8s")),
            run=Path(os.environ.get("SAGASCOPE_K8S_RUN", "/run/sagascope-k8s")),
        )

    # --- the contract -------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    containerd_namespace = "k8s.io"

    # --- the rest -----------------------------------------------------------------------------
    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    @property
    def containerd_root(self) -> Path:
        return self.state / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.run / "containerd"

    @property
    def containerd_config(self) -> Path:
        return self.state / "containerd.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.state / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.state / "cni" / "networks"

    @property
    def kubelet_root(self) -> Path:
        return self.state / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.state / "kubelet.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.state / "kube-proxy.yaml"

    @property
    def pid_file(self) -> Path:
        return self.state / "daemon.pid"

    @property
    def status_file(self) -> Path:
        """What the daemon last said: `starting`, `ready`, `failed: ...` or `stopped`."""
        return self.state / "daemon.status"

    @property
    def children_file(self) -> Path:
        """The supervised processes' ids, so `down` can end them if the daemon itself died."""
        return self.state / "children.json"

    @property
    def host_file(self) -> Path:
        """Host settings found before `up` (sysctls, whether /var/log/pods existed), restored by `down`."""
        return self.state / "host.json"

    @property
    def api_server(self) -> str:
        return f"https://{self.network.node_ip}:{self.ports.apiserver}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.etcd_client}"

    @property
    def cache(self) -> Path:
        return Path(os.environ.get("SAGASCOPE_CACHE", Path.home() / ".cache" / "sagascope"))

    @property
    def images_cache(self) -> Path:
        return self.cache / "images"

    def env_lines(self) -> list[str]:
        return [
            f"KUBECONFIG={self.kubeconfig}",
            f"CONTAINERD_ADDRESS={self.containerd_socket}",
            f"CONTAINERD_NAMESPACE={self.containerd_namespace}",
        ]
