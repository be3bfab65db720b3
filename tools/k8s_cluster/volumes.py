"""Storage for PersistentVolumeClaims: a default StorageClass `standard` and a small provisioner
that gives each pending claim of that class a hostPath PersistentVolume in the cluster's state
directory — what kind's local-path-provisioner does, so StatefulSets' volumeClaimTemplates work.

The daemon runs ``provision`` every few seconds. A directory is world-writable (as local-path's
are): hostPath volumes get no fsGroup ownership, and the workloads run as their own non-root uids.
The volumes go with the state directory on `down`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from subprocess import CompletedProcess
from typing import Any

from tools.k8s_cluster.layout import Layout

CLASS = "standard"
PROVISIONER = "sagascope.local/hostpath"

Kubectl = Callable[..., CompletedProcess[str]]


def storage_class() -> str:
    return json.dumps({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    })


def _volume(layout: Layout, claim: dict[str, Any]) -> dict[str, Any]:
    meta = claim["metadata"]
    path = layout.state / "volumes" / f"{meta['namespace']}-{meta['name']}-{meta['uid'][:8]}"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"pvc-{meta['uid']}", "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
            "accessModes": claim["spec"]["accessModes"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": CLASS,
            "claimRef": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [layout.node_name]}]}]}},
        },
    }


def provision(layout: Layout, kubectl: Kubectl) -> list[str]:
    """A volume for every pending claim of the class; returns the claims served."""
    claims = json.loads(kubectl("get", "pvc", "-A", "-o", "json").stdout)["items"]
    served = []
    for claim in claims:
        if claim["status"].get("phase") != "Pending" or claim["spec"].get("storageClassName") != CLASS:
            continue
        if claim["spec"].get("volumeName"):
            continue
        kubectl("apply", "-f", "-", stdin=json.dumps(_volume(layout, claim)))
        served.append(f"{claim['metadata']['namespace']}/{claim['metadata']['name']}")
    return served
