"""Cluster DNS: CoreDNS (built here, `FROM scratch` image) as a Pod in kube-system behind the
`kube-dns` Service at the kubelet's clusterDNS address.

A Pod, not a host process, because NetworkPolicies name it: the manifests' `allow-dns` policy
lets Pods reach port 53 of Pods labelled `k8s-app: kube-dns` in kube-system, and the enforcer
would drop the same queries sent to a host address. Only the cluster zone is served: Pods have no
upstream to forward other names to.
"""

from __future__ import annotations

import json
import socket
import struct

from tools.k8s_cluster.layout import Layout

COREFILE = """.:53 {
    errors
    health :8080
    ready :8181
    kubernetes %(domain)s in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
    loop
    reload
}
"""

LABELS = {"k8s-app": "kube-dns"}


def manifests(layout: Layout, image: str) -> str:
    """kubectl-appliable JSON: RBAC, the Corefile, the Deployment and the kube-dns Service."""
    ns = "kube-system"
    objects: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": ns}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                 "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": ns},
            "data": {"Corefile": COREFILE % {"domain": layout.network.cluster_domain}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": ns, "labels": LABELS},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {"labels": LABELS},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "priorityClassName": "system-cluster-critical",
                        "containers": [
                            {
                                "name": "coredns",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                ],
                                "resources": {"requests": {"cpu": "50m", "memory": "32Mi"},
                                              "limits": {"memory": "128Mi"}},
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                                },
                                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080},
                                                  "periodSeconds": 10},
                                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181},
                                                   "periodSeconds": 2},
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": ns, "labels": LABELS},
            "spec": {
                "selector": LABELS,
                "clusterIP": layout.network.dns_service_ip,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})


def _skip_name(message: bytes, pos: int) -> int:
    """The offset after a (possibly compressed) domain name starting at ``pos``."""
    while message[pos]:
        if message[pos] & 0xC0 == 0xC0:  # a pointer ends the name
            return pos + 2
        pos += message[pos] + 1
    return pos + 1


def resolve(server: str, name: str, timeout: float = 2.0, port: int = 53) -> list[str]:
    """The A records ``server`` answers for ``name`` (one UDP query; [] on no answer)."""
    query = struct.pack(">HHHHHH", 0x5A5A, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    query += struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(query, (server, port))
            reply = sock.recv(4096)
        except OSError:
            return []
    return parse_answer(reply, len(query))  # the reply repeats the question first


def parse_answer(reply: bytes, pos: int) -> list[str]:
    """The A records of a DNS reply whose answers start at ``pos``."""
    answers = struct.unpack(">H", reply[6:8])[0]
    found = []
    for _ in range(answers):
        pos = _skip_name(reply, pos)
        rtype, _cls, _ttl, length = struct.unpack(">HHIH", reply[pos : pos + 10])
        pos += 10
        if rtype == 1 and length == 4:
            found.append(socket.inet_ntoa(reply[pos : pos + 4]))
        pos += length
    return found
