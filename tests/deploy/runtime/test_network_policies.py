"""The NetworkPolicies hold on the running cluster, with kube-router enforcing them: an allowed flow
(order → payment) connects, and denied ones (payment → PostgreSQL; an unlabelled Pod → order) are
refused. Each flow is a one-shot Pod of the service image trying a TCP connection by Service name."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from tests.deploy.runtime.kube import Kube, restricted_pod, run_pod

# kube-router adds a new Pod's address to the policies' IP sets a moment after the Pod starts, so
# the probe keeps trying for a while: an allowed flow must connect within it, a denied one must be
# refused on every attempt (a single early refusal would prove nothing).
PROBE = (
    "import socket, sys, time\n"
    "host, port, window = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])\n"
    "deadline, last = time.monotonic() + window, None\n"
    "while time.monotonic() < deadline:\n"
    "    try:\n        socket.create_connection((host, port), timeout=3).close()\n"
    "    except OSError as exc:\n        last = exc\n        time.sleep(1)\n        continue\n"
    "    print('connected'); sys.exit(0)\n"
    "print('refused', type(last).__name__, last); sys.exit(1)\n"
)
PROBE_WINDOW_S = 20


def _service_image(deployed: list[dict[str, Any]]) -> str:
    order = next(o for o in deployed if o["kind"] == "Deployment" and o["metadata"]["name"] == "order")
    return str(order["spec"]["template"]["spec"]["containers"][0]["image"])


def _flow(kube: Kube, deployed: list[dict[str, Any]], name: str, labels: dict[str, str], host: str,
          port: int) -> tuple[str, str]:
    argv = ["python", "-c", PROBE, host, str(port), str(PROBE_WINDOW_S)]
    pod = restricted_pod(name, _service_image(deployed), argv, labels)
    # Never Ready, so a probe wearing a workload's labels never joins that workload's Service.
    pod["spec"]["containers"][0]["readinessProbe"] = {"exec": {"command": ["false"]}, "periodSeconds": 60}
    return run_pod(kube, pod)


def test_the_enforcer_is_running(kube: Kube) -> None:
    rules = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True).stdout
    assert "KUBE-ROUTER-FORWARD" in rules and "KUBE-NWPLCY-" in rules, "kube-router has no policy chains"


@pytest.mark.parametrize(
    ("name", "labels", "host", "port", "allowed"),
    [
        ("np-order-to-payment", {"app.kubernetes.io/name": "order"}, "payment", 50053, True),
        ("np-payment-to-postgres", {"app.kubernetes.io/name": "payment"}, "postgres", 5432, False),
        ("np-unlabelled-to-order", {"sagascope.test": "unlabelled"}, "order", 50052, False),
    ],
)
def test_flows(kube: Kube, deployed: list[dict[str, Any]], name: str, labels: dict[str, str], host: str,
               port: int, allowed: bool) -> None:
    phase, log = _flow(kube, deployed, name, labels, host, port)
    if allowed:
        assert phase == "Succeeded" and "connected" in log, f"{name}: {phase} {log}"
    else:
        assert phase == "Failed" and "refused" in log and "gaierror" not in log, f"{name}: {phase} {log}"
