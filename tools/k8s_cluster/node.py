"""The node's configuration files: the kubelet's and kube-proxy's.

The kubelet runs on this cgroup v1 (hybrid) host only with ``failCgroupV1: false`` (KEP-5573),
uses the cgroupfs driver (no systemd), tolerates swap, and lists no eviction thresholds a shared
machine's disk would trip. kube-proxy runs in iptables mode, leaves the conntrack table size alone
and opens NodePorts on the node address only.
"""

from __future__ import annotations

import json
from pathlib import Path

from tools.k8s_cluster.layout import Layout


def kubelet_config(layout: Layout, ca: Path) -> dict[str, object]:
    net, ports = layout.network, layout.ports
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "imageServiceEndpoint": f"unix://{layout.containerd_socket}",
        "address": net.node_ip,
        "port": ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports.kubelet_healthz,
        "clusterDNS": [net.dns_service_ip],
        "clusterDomain": net.cluster_domain,
        # Only clients with a certificate of the cluster's CA (the API server, for logs/exec/port-forward).
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        # The machine's disk is shared and fuller than a node's would be: evict on memory only.
        "evictionHard": {"memory.available": "200Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        # Images come from archives, not a registry: never garbage-collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "maxPods": 110,
        "shutdownGracePeriod": "0s",
        # Its default, /usr/libexec/kubernetes/..., would be created outside the state directory.
        "volumePluginDir": str(layout.kubelet_root / "volume-plugins"),
    }


def kube_proxy_config(layout: Layout, kubeconfig: Path) -> dict[str, object]:
    net, ports = layout.network, layout.ports
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": net.cluster_cidr,
        "hostnameOverride": layout.node_name,
        "bindAddress": net.node_ip,
        "healthzBindAddress": f"127.0.0.1:{ports.kube_proxy_healthz}",
        "metricsBindAddress": f"127.0.0.1:{ports.kube_proxy_metrics}",
        "nodePortAddresses": [f"{net.node_ip}/32"],
        "conntrack": {"maxPerCore": 0},  # leave the machine's nf_conntrack_max as it is
    }


def write(layout: Layout, ca: Path) -> None:
    # JSON is YAML: both components read these files as YAML.
    layout.kubelet_config.write_text(json.dumps(kubelet_config(layout, ca), indent=2))
    layout.kube_proxy_config.write_text(json.dumps(kube_proxy_config(layout, layout.kubeconfig), indent=2))


def kubelet_command(layout: Layout, kubelet: Path) -> list[str]:
    return [
        str(kubelet),
        f"--config={layout.kubelet_config}",
        f"--kubeconfig={layout.kubeconfig}",
        f"--root-dir={layout.kubelet_root}",
        f"--cert-dir={layout.kubelet_root / 'pki'}",
        f"--hostname-override={layout.node_name}",
        # The node's hostname does not resolve: the API server reaches the kubelet by this address.
        f"--node-ip={layout.network.node_ip}",
        "--v=1",
    ]


def kube_proxy_command(layout: Layout, kube_proxy: Path) -> list[str]:
    return [str(kube_proxy), f"--config={layout.kube_proxy_config}", "--v=1"]
