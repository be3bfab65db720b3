"""The single-node cluster's configuration files say what KUBELET-HERE.md found it takes to run
here (tools/k8s_cluster): containerd's CRI settings, the kubelet on cgroup v1, a private Pod
network without masquerade, and a DNS reader that understands compressed answers."""

from __future__ import annotations

import json
import struct
import tomllib
from pathlib import Path

from tools.k8s_cluster import cni, containerd, dns, node
from tools.k8s_cluster.layout import Layout

LAYOUT = Layout(state=Path("/var/lib/sagascope-k8s"), run=Path("/run/sagascope-k8s"))
CRI = "io.containerd.grpc.v1.cri"


def test_containerd_runs_its_own_cri_as_it_works_here() -> None:
    config = tomllib.loads(containerd.config(LAYOUT, "localhost/sagascope/pause:3.10.2"))
    cri = config["plugins"][CRI]
    assert config["grpc"]["address"] == "/run/sagascope-k8s/containerd.sock"
    assert config["root"].startswith("/var/lib/sagascope-k8s/") and config["state"].startswith("/run/sagascope-k8s/")
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"].startswith("localhost/")
    assert cri["containerd"]["default_runtime_name"] == "runc"
    assert cri["containerd"]["runtimes"]["runc"]["runtime_type"] == "io.containerd.runc.v2"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["cni"] == {"bin_dir": "/usr/lib/cni", "conf_dir": str(LAYOUT.cni_conf_dir), "max_conf_num": 1}


def test_the_kubelet_runs_on_cgroup_v1_with_cluster_dns() -> None:
    config = node.kubelet_config(LAYOUT, Path("/ca.crt"))
    assert config["failCgroupV1"] is False and config["cgroupDriver"] == "cgroupfs" and config["failSwapOn"] is False
    assert config["clusterDNS"] == [LAYOUT.network.dns_service_ip]
    assert config["authentication"]["anonymous"] == {"enabled": False}  # type: ignore[index]
    assert str(config["volumePluginDir"]).startswith(str(LAYOUT.state))
    assert "--node-ip=10.244.0.1" in node.kubelet_command(LAYOUT, Path("kubelet"))
    assert node.kube_proxy_config(LAYOUT, LAYOUT.kubeconfig)["mode"] == "iptables"


def test_pods_get_a_private_range_without_masquerade() -> None:
    bridge, portmap = cni.conflist(LAYOUT)["plugins"]  # type: ignore[misc]
    assert bridge["type"] == "bridge" and bridge["ipMasq"] is False and bridge["isGateway"] is True
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.0.0/24", "gateway": "10.244.0.1"}]]
    assert portmap["type"] == "portmap"


def test_coredns_is_a_pod_behind_the_kube_dns_service() -> None:
    items = {o["kind"]: o for o in json.loads(dns.manifests(LAYOUT, "localhost/sagascope/coredns:v1"))["items"]}
    assert items["Service"]["metadata"]["name"] == "kube-dns"
    assert items["Service"]["spec"]["clusterIP"] == LAYOUT.network.dns_service_ip
    pod = items["Deployment"]["spec"]["template"]
    assert pod["metadata"]["labels"] == {"k8s-app": "kube-dns"}  # what the manifests' allow-dns policy names
    assert "forward" not in items["ConfigMap"]["data"]["Corefile"]  # Pods have nowhere else to ask


def test_the_dns_reader_follows_compressed_names() -> None:
    question = b"\x01a\x01b\x00" + struct.pack(">HH", 1, 1)
    header = struct.pack(">HHHHHH", 0x5A5A, 0x8180, 1, 2, 0, 0)
    answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 30, 4) + bytes([10, 1, 2, 3])
    answer += b"\x01a\x01b\x00" + struct.pack(">HHIH", 1, 1, 30, 4) + bytes([10, 1, 2, 4])
    assert dns.parse_answer(header + question + answer, len(header + question)) == ["10.1.2.3", "10.1.2.4"]
