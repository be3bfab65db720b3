"""The Pods' network: Debian's CNI `bridge` + `host-local` (+ `portmap`; containerd adds
`loopback`) on a private /24, and the rule that keeps Pod traffic on this machine.

The bridge is made before anything starts, carrying the node address, so the API server and
kubelet can bind to it and Pods reach them through their gateway. No masquerade: Pod traffic has
nowhere to go but the bridge, and a mangle-table rule drops anything forwarded between the bridge
and another interface (the bridge plugin turns on ip_forward, which Service traffic needs).
"""

from __future__ import annotations

import json
import subprocess

from tools.k8s_cluster.layout import Layout

ISOLATE_CHAIN = "SAGASCOPE-K8S-ISOLATE"


def conflist(layout: Layout) -> dict[str, object]:
    net = layout.network
    return {
        "cniVersion": "0.4.0",
        "name": net.cni_name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,  # a Pod reaching itself through its Service
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(layout.cni_ipam_dir),
                    "ranges": [[{"subnet": net.pod_cidr, "gateway": net.node_ip}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def write(layout: Layout) -> None:
    layout.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    (layout.cni_conf_dir / f"10-{layout.network.cni_name}.conflist").write_text(json.dumps(conflist(layout), indent=2))


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True)


def create_bridge(layout: Layout) -> None:
    """The bridge with the node address, up; and the isolation rule. Idempotent."""
    net = layout.network
    if _sh("ip", "link", "show", net.bridge).returncode != 0:
        _check(_sh("ip", "link", "add", net.bridge, "type", "bridge"))
    address = f"{net.node_ip}/{net.node_prefix}"
    if address not in _sh("ip", "-4", "addr", "show", "dev", net.bridge).stdout:
        _check(_sh("ip", "addr", "add", address, "dev", net.bridge))
    _check(_sh("ip", "link", "set", net.bridge, "up"))
    isolate(layout)


def isolate(layout: Layout) -> None:
    """mangle FORWARD -> SAGASCOPE-K8S-ISOLATE: drop what is forwarded between the bridge and any other
    interface. In mangle, so that no ACCEPT in filter (kube-proxy's, kube-router's) comes first."""
    bridge = layout.network.bridge
    if _sh("iptables", "-t", "mangle", "-L", ISOLATE_CHAIN, "-n").returncode == 0:
        return
    _check(_sh("iptables", "-t", "mangle", "-N", ISOLATE_CHAIN))
    _check(_sh("iptables", "-t", "mangle", "-A", ISOLATE_CHAIN, "-i", bridge, "!", "-o", bridge, "-j", "DROP"))
    _check(_sh("iptables", "-t", "mangle", "-A", ISOLATE_CHAIN, "-o", bridge, "!", "-i", bridge, "-j", "DROP"))
    _check(_sh("iptables", "-t", "mangle", "-I", "FORWARD", "1", "-j", ISOLATE_CHAIN))


def _check(proc: subprocess.CompletedProcess[str]) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, proc.args))} failed: {proc.stderr.strip()}")
