"""The node agent as the dev rendering runs it — the DaemonSet's args and environment, the bytes of
its generated ConfigMap — on the locally built collector: a service's JSON log line, framed by the
container runtime (CRI) in a kubelet-shaped /var/log/pods tree, reaches the gateway over OTLP as the
record the SDK would send, named by the Pod's uid, namespace and container from the file's path
(what the gateway's k8s_attributes associates by). The gateway here is a real OTLP gRPC server
that keeps what it receives."""

from __future__ import annotations

import logging
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs

from sagascope.common.telemetry.logs import ContextFieldsFilter, JsonLineFormatter
from sagascope.local.backends import Installed
from sagascope.local.supervisor import free_port
from tests.deploy.flows import container_env, data_of
from tests.deploy.render import Rendering, pod_spec

POD_UID = "0f6c3a52-7d1e-4c55-9a0e-3b8d2f1e4a77"
POD_DIR = f"sagascope_order-7d9c8b6f4-x2x9q_{POD_UID}"


class Gateway(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self) -> None:
        self.received: list[ResourceLogs] = []

    def Export(  # the gRPC method's name
        self, request: logs_service_pb2.ExportLogsServiceRequest, context: grpc.ServicerContext
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        self.received.extend(request.resource_logs)
        return logs_service_pb2.ExportLogsServiceResponse()


@pytest.fixture
def gateway() -> Iterator[tuple[Gateway, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = Gateway()
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, port
    finally:
        server.stop(grace=None)


def otelcol() -> Path:
    binary = Installed.read().otelcol_bin
    if not os.access(binary, os.X_OK):
        reason = f"the collector is not built ({binary}): make backends"
        if os.environ.get("SAGASCOPE_REQUIRE_K8S") == "1":
            pytest.fail(f"deploy tier required (SAGASCOPE_REQUIRE_K8S=1): {reason}")
        pytest.skip(reason)
    return binary


def json_line(correlation_id: str) -> str:
    """A saga log line exactly as the order service writes it to stdout."""
    record = logging.LogRecord("sagascope.saga.observer", logging.INFO, __file__, 1, "saga finished", None, None)
    record.__dict__.update({"event": "saga.finished", "correlation_id": correlation_id, "saga.id": "s-1"})
    ContextFieldsFilter("order-service").filter(record)
    return JsonLineFormatter().format(record)


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in kvs}


def test_the_agent_forwards_a_pods_log_line_to_the_gateway(
    renderings: dict[str, Rendering], gateway: tuple[Gateway, int], tmp_path: Path
) -> None:
    binary = otelcol()
    rendering = renderings["dev"]
    agent = rendering.named("DaemonSet", "otel-agent")
    (container,) = pod_spec(agent)["containers"]
    config_dir = tmp_path / "etc" / "otelcol"
    config_dir.mkdir(parents=True)
    for name, text in data_of(rendering, "ConfigMap", "otel-agent-config").items():
        (config_dir / name).write_text(text)
    args = [a.replace("/etc/otelcol/", f"{config_dir}/") for a in container["args"]]
    log_file = tmp_path / "var" / "log" / "pods" / POD_DIR / "order" / "0.log"
    log_file.parent.mkdir(parents=True)
    log_file.write_text(f"2026-12-06T10:00:00.000000001Z stdout F {json_line('before-the-agent')}\n")

    servicer, port = gateway
    env = container_env(rendering, container)
    assert env["OTELCOL_GATEWAY_ENDPOINT"] == "otel-collector.sagascope:4317"  # the cluster's; here, loopback
    health, metrics = free_port(), free_port()
    env |= {
        "OTELCOL_GATEWAY_ENDPOINT": f"127.0.0.1:{port}",
        "FILELOG_INCLUDE": env["FILELOG_INCLUDE"].replace("/var/log/pods/", f"{tmp_path}/var/log/pods/", 1),
        "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{health}",
        "OTELCOL_METRICS_HOST": "127.0.0.1",
        "OTELCOL_METRICS_PORT": str(metrics),
    }
    proc = subprocess.Popen(
        [str(binary), *args],
        env={"PATH": os.environ.get("PATH", ""), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the agent did not become healthy"
            time.sleep(0.2)
        time.sleep(1.5)  # its first poll has seen the file (start_at: end): what follows is new
        with log_file.open("a") as f:
            f.write(f"2026-12-06T10:00:01.000000001Z stdout F {json_line('c-agent-1')}\n")
            f.write("2026-12-06T10:00:01.000000002Z stderr F Traceback (most recent call last):\n")
        deadline = time.monotonic() + 30
        while not servicer.received and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    records = [(rl.resource, r) for rl in servicer.received for sl in rl.scope_logs for r in sl.log_records]
    assert records, f"nothing reached the gateway; the agent said:\n{output[-3000:]}"
    ((resource, record),) = records  # the line written later only; the traceback is dropped
    assert attributes(resource.attributes) == {
        "service.name": "order-service",
        "k8s.namespace.name": "sagascope",
        "k8s.pod.name": "order-7d9c8b6f4-x2x9q",
        "k8s.pod.uid": POD_UID,
        "k8s.container.name": "order",
        "k8s.container.restart_count": "0",
    }
    assert record.body.string_value == "saga finished"
    assert record.severity_text == "INFO"
    assert record.event_name == "", "the gateway names the event (transform/event_name), as for any sender"
    fields = attributes(record.attributes)
    assert fields["correlation_id"] == "c-agent-1"
    assert fields["event"] == "saga.finished" and fields["saga.id"] == "s-1"
    assert "log.file.path" not in fields and "log.iostream" not in fields
