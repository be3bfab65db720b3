"""The real flows of a rendering, read from what each workload is configured to call: its
environment (ConfigMaps and Secrets included) and the config files mounted into it. A flow is
(caller app, callee app, callee container port)."""

from __future__ import annotations

import base64
import re
from typing import Any

from tests.deploy.render import NAMESPACE, Rendering, app_name, pod_spec

HOST_PORT = re.compile(r"(?:^|[/@\"'\s\[,=-])([a-z][a-z0-9-]*):(\d{2,5})\b")
Flow = tuple[str, str, int]


def _data(obj: dict[str, Any]) -> dict[str, str]:
    if obj["kind"] == "Secret":
        return {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}
    return dict(obj.get("data", {}))


def data_of(rendering: Rendering, kind: str, name: str) -> dict[str, str]:
    """A generated ConfigMap/Secret by its name before the hash suffix (or its exact name)."""
    for obj in rendering.of_kind(kind):
        n = obj["metadata"]["name"]
        if n == name or n.rsplit("-", 1)[0] == name:
            return _data(obj)
    return {}


def configured_text(rendering: Rendering, workload: dict[str, Any]) -> list[str]:
    """Every value the workload's containers are given: env, envFrom, mounted ConfigMaps/Secrets."""
    pod = pod_spec(workload)
    texts: list[str] = []
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        texts += [*c.get("args", []), *c.get("command", [])]
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                texts += data_of(rendering, "ConfigMap", source["configMapRef"]["name"]).values()
            if "secretRef" in source:
                texts += data_of(rendering, "Secret", source["secretRef"]["name"]).values()
        for env in c.get("env", []):
            if "value" in env:
                texts.append(f"{env['name']}={env['value']}")
            ref = env.get("valueFrom", {})
            if "secretKeyRef" in ref:
                texts.append(
                    data_of(rendering, "Secret", ref["secretKeyRef"]["name"]).get(ref["secretKeyRef"]["key"], "")
                )
            if "configMapKeyRef" in ref:
                texts.append(
                    data_of(rendering, "ConfigMap", ref["configMapKeyRef"]["name"]).get(
                        ref["configMapKeyRef"]["key"], ""
                    )
                )
    # A mounted config file counts when the program is told to read it (`--config=<path>`, as the
    # collector is): a profile that sits in the same ConfigMap but is not loaded makes no call.
    loaded = {a.split("=", 1)[1].rsplit("/", 1)[-1] for c in pod["containers"] for a in c.get("args", [])
              if a.startswith("--config=")}
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            data = data_of(rendering, "ConfigMap", volume["configMap"]["name"])
            texts += [text for key, text in data.items() if not loaded or key in loaded]
    return texts


def service_target(rendering: Rendering, service: dict[str, Any], port: int) -> tuple[str, int] | None:
    """(callee app, container port) behind ``service:port``."""
    for p in service["spec"]["ports"]:
        if p["port"] != port:
            continue
        app = service["spec"]["selector"]["app.kubernetes.io/name"]
        target = p.get("targetPort", port)
        if isinstance(target, int):
            return app, target
        for workload in rendering.workloads():
            if app_name(workload) == app:
                for c in pod_spec(workload)["containers"]:
                    for cp in c.get("ports", []):
                        if cp.get("name") == target:
                            return app, int(cp["containerPort"])
    return None


def flows(rendering: Rendering) -> set[Flow]:
    services = {s["metadata"]["name"]: s for s in rendering.of_kind("Service")}
    found: set[Flow] = set()
    for workload in rendering.workloads():
        caller = app_name(workload)
        for text in configured_text(rendering, workload):
            for host, port in HOST_PORT.findall(text):
                if host in services:
                    target = service_target(rendering, services[host], int(port))
                    if target and target[0] != caller:
                        found.add((caller, target[0], target[1]))
    found |= mesh_flows(rendering, services)
    return found


def mesh_flows(rendering: Rendering, services: dict[str, dict[str, Any]]) -> set[Flow]:
    """The ingress gateway's calls: each public route's destination, and its spans to the collector
    (the Telemetry resource's provider, otel-collector:4317)."""
    gateways = [w for w in rendering.workloads() if w["spec"]["template"]["metadata"]["labels"].get("istio")]
    found: set[Flow] = set()
    for gateway in gateways:
        caller = app_name(gateway)
        for vs in rendering.of_kind("VirtualService"):
            if not vs["spec"].get("gateways"):
                continue
            for route in vs["spec"]["http"]:
                for dest in route["route"]:
                    host = dest["destination"]["host"].split(".")[0]
                    target = service_target(rendering, services[host], dest["destination"]["port"]["number"])
                    if target:
                        found.add((caller, *target))
        if rendering.of_kind("Telemetry"):
            target = service_target(rendering, services["otel-collector"], 4317)
            if target:
                found.add((caller, *target))
    return found


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def pod_labels(rendering: Rendering) -> dict[str, dict[str, str]]:
    return {app_name(w): w["spec"]["template"]["metadata"]["labels"] for w in rendering.workloads()}


def namespace_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("namespace", NAMESPACE))


def pod_namespaces(rendering: Rendering) -> dict[str, str]:
    return {app_name(w): namespace_of(w) for w in rendering.workloads()}


def peer_selects(peer: dict[str, Any], policy_namespace: str, namespace: str, labels: dict[str, str]) -> bool:
    """Whether a policy peer (from/to) with a podSelector names a pod of ``namespace`` with
    ``labels``: without a namespaceSelector, the policy's own namespace; with one, the namespaces
    it selects by their kubernetes.io/metadata.name label."""
    if "podSelector" not in peer:
        return False
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
    else:
        in_namespace = namespace == policy_namespace
    return in_namespace and selects(peer["podSelector"], labels)


def allowed(rendering: Rendering, flow: Flow) -> tuple[bool, bool]:
    """(egress allowed for the caller, ingress allowed at the callee) by the NetworkPolicies."""
    labels, namespaces = pod_labels(rendering), pod_namespaces(rendering)
    caller, callee, port = flow
    egress = ingress = False
    for policy in rendering.of_kind("NetworkPolicy"):
        spec, where = policy["spec"], namespace_of(policy)
        if where == namespaces[caller] and selects(spec["podSelector"], labels[caller]) and (
            "Egress" in spec["policyTypes"]
        ):
            for rule in spec.get("egress", []):
                to_ok = "to" not in rule or any(
                    peer_selects(peer, where, namespaces[callee], labels[callee]) for peer in rule["to"]
                )
                if to_ok and any(p["port"] == port for p in rule.get("ports", [])):
                    egress = True
        if where == namespaces[callee] and selects(spec["podSelector"], labels[callee]) and (
            "Ingress" in spec["policyTypes"]
        ):
            for rule in spec.get("ingress", []):
                from_ok = any(
                    peer_selects(peer, where, namespaces[caller], labels[caller]) for peer in rule.get("from", [])
                )
                if from_ok and any(p["port"] == port for p in rule.get("ports", [])):
                    ingress = True
    return egress, ingress


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def container_env(rendering: Rendering, container: dict[str, Any]) -> dict[str, str]:
    """The environment the kubelet gives ``container``: envFrom first, then env in order, each value's
    ``$(VAR)`` expanded from what is defined before it (``$$`` escapes, an unknown name stays as
    written). A downward-API field reads ``<fieldRef:PATH>``."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(data_of(rendering, "ConfigMap", source["configMapRef"]["name"]))
        if "secretRef" in source:
            env.update(data_of(rendering, "Secret", source["secretRef"]["name"]))

    def expand(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    for var in container.get("env", []):
        ref = var.get("valueFrom", {})
        if "value" in var:
            env[var["name"]] = _REFERENCE.sub(expand, var["value"])
        elif "fieldRef" in ref:
            env[var["name"]] = f"<fieldRef:{ref['fieldRef']['fieldPath']}>"
        elif "configMapKeyRef" in ref:
            key = ref["configMapKeyRef"]
            env[var["name"]] = data_of(rendering, "ConfigMap", key["name"]).get(key["key"], "")
        elif "secretKeyRef" in ref:
            key = ref["secretKeyRef"]
            env[var["name"]] = data_of(rendering, "Secret", key["name"]).get(key["key"], "")
    return env
