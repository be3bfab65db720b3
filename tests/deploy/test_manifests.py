"""What a reviewer checks by hand, asserted on the rendered objects of every overlay."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sagascope.common.config import ConfigError
from sagascope.common.server import GrpcServerConfig
from sagascope.identity.keys import KeyRing
from tests.deploy.cluster import Tools
from tests.deploy.flows import container_env, data_of
from tests.deploy.render import (
    APP,
    NODE_NAMESPACE,
    OVERLAYS,
    REPO,
    TEST_INPUTS,
    Rendering,
    app_name,
    copy_tree,
    pod_spec,
    render,
)

# Backend images whose entrypoints write inside the image (dev overlay only): a writable root.
WRITABLE_ROOT = {"elasticsearch", "kibana"}  # their main containers only (dev); a helper beside them is read-only
# The one workload that runs as uid 0 (the owner of the kubelet's log files), with no capability.
ROOT_USER = {"otel-agent"}


def env_of(path: str) -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in (REPO / path).read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )


ENV = env_of(".env")


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.fixture(params=OVERLAYS)
def rendering(request: pytest.FixtureRequest, renderings: dict[str, Rendering]) -> Rendering:
    return renderings[request.param]


def test_every_container_is_hardened(rendering: Rendering) -> None:
    for workload in rendering.workloads():
        pod = pod_spec(workload)
        root = app_name(workload) in ROOT_USER
        assert pod["securityContext"]["runAsNonRoot"] is not root, workload["metadata"]["name"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in containers(workload):
            where = f"{rendering.overlay}: {workload['metadata']['name']}/{c['name']}"
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in sc["capabilities"], where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert sc.get("privileged") is False, where
            assert (sc.get("runAsUser") == 0) is root, where
            writable = c["name"] == app_name(workload) in WRITABLE_ROOT
            assert sc["readOnlyRootFilesystem"] is not writable, where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{where}: {kind}"


def test_services_have_grpc_probes_and_drain_in_time(rendering: Rendering) -> None:
    drain = GrpcServerConfig(host="", port=0).grace_seconds
    for name in APP:
        deployment = rendering.named("Deployment", name)
        pod = pod_spec(deployment)
        (c,) = pod["containers"]
        grpc_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == grpc_port, f"{name}: {probe}"
        # Readiness asks for the service itself, liveness for the process (grpc.health.v1 "").
        assert c["readinessProbe"]["grpc"]["service"].startswith("sagascope.")
        assert "service" not in c["livenessProbe"]["grpc"]
        pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        # The preStop pause, the gRPC drain and a few seconds for the telemetry flush fit the grace.
        assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + 5, name
        assert pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"] == name
        assert rendering.named("ServiceAccount", name)


def test_service_ports_are_named_for_protocol_selection(rendering: Rendering) -> None:
    for service in rendering.of_kind("Service"):
        for port in service["spec"]["ports"]:
            assert re.match(r"^(grpc|http|https|tcp|tls)(-|$)", port["name"]), (service["metadata"]["name"], port)
            if "appProtocol" in port:
                assert port["name"].split("-")[0] == port["appProtocol"], port


def test_order_and_payment_have_pdb_hpa_and_order_spreads(rendering: Rendering) -> None:
    for name in ("order", "payment"):
        deployment = rendering.named("Deployment", name)
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        hpa = rendering.named("HorizontalPodAutoscaler", name)
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["minReplicas"] >= 2
        pdb = rendering.named("PodDisruptionBudget", name)
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "a node drain must be possible"
        assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    spread = pod_spec(rendering.named("Deployment", "order"))["topologySpreadConstraints"]
    assert {s["topologyKey"] for s in spread} >= {"kubernetes.io/hostname"}


def test_production_settings_refuse_dev_secrets(renderings: dict[str, Rendering]) -> None:
    prod = renderings["production"]
    (common,) = [c for c in prod.of_kind("ConfigMap") if c["metadata"]["name"].startswith("sagascope-common")]
    assert common["data"]["SAGASCOPE_ENV"] == "production"
    assert not prod.of_kind("Secret"), "production ships no Secret: the operator creates them"
    dev = renderings["dev"]
    (dev_common,) = [c for c in dev.of_kind("ConfigMap") if c["metadata"]["name"].startswith("sagascope-common")]
    assert dev_common["data"]["SAGASCOPE_ENV"] == "development"


def configmap(rendering: Rendering, prefix: str) -> dict[str, str]:
    (cm,) = [c for c in rendering.of_kind("ConfigMap") if c["metadata"]["name"].startswith(prefix + "-")]
    data: dict[str, str] = cm["data"]
    return data


def test_configmaps_carry_the_repos_config_files_byte_for_byte(renderings: dict[str, Rendering]) -> None:
    collector = REPO / "observability" / "otel-collector"
    for rendering in renderings.values():
        data = configmap(rendering, "otel-collector-config")
        assert data["otelcol-config.yml"] == (collector / "otelcol-config.yml").read_text()
        assert data["k8s.yml"] == (collector / "profiles" / "k8s.yml").read_text()
        assert data["postgresql.yml"] == (collector / "profiles" / "postgresql.yml").read_text()
        agent = configmap(rendering, "otel-agent-config")
        assert agent == {
            "filelog.yml": (collector / "profiles" / "filelog.yml").read_text(),
            "agent.yml": (collector / "agent.yml").read_text(),
        }
    dev = renderings["dev"]
    expected: dict[str, list[Path]] = {
        "prometheus-config": [
            REPO / "observability/prometheus/prometheus.yml",
            *sorted((REPO / "observability/prometheus").glob("*rules*.yml")),
        ],
        "jaeger-config": [REPO / "observability/jaeger/config.yaml"],
        "elasticsearch-config": [REPO / "observability/elk/elasticsearch.yml"],
        "grafana-datasources": sorted((REPO / "observability/grafana/provisioning/datasources").glob("*.yml")),
        "grafana-dashboard-provider": sorted((REPO / "observability/grafana/provisioning/dashboards").glob("*.yml")),
        "grafana-dashboards": sorted((REPO / "dashboards").glob("*.json")),
        "postgres-initdb": sorted((REPO / "observability/postgresql").glob("*")),  # initdb.sh and the role
    }
    for name, files in expected.items():
        data = configmap(dev, name)
        assert sorted(data) == sorted(f.name for f in files), f"{name}: a file is missing from its kustomization"
        for f in files:
            assert data[f.name] == f.read_text(), f"{name}/{f.name} differs from {f.relative_to(REPO)}"


def test_collector_runs_base_config_then_k8s_profile(rendering: Rendering) -> None:
    (c,) = pod_spec(rendering.named("Deployment", "otel-collector"))["containers"]
    assert [a for a in c["args"] if a.startswith("--config")] == [
        "--config=/etc/otelcol/otelcol-config.yml",
        "--config=/etc/otelcol/k8s.yml",
    ]
    rules = rendering.named("ClusterRole", "sagascope-otel-collector")["rules"]
    readable = {(g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    assert readable >= {("", "pods"), ("", "namespaces"), ("apps", "replicasets")}


def test_images_follow_the_pinned_versions(rendering: Rendering) -> None:
    pins = {
        "otel/opentelemetry-collector-contrib": ENV["OTELCOL_VERSION"],
        "postgres": ENV["POSTGRES_VERSION"],
        "mongo": ENV["MONGO_VERSION"],
        "jaegertracing/jaeger": ENV["JAEGER_VERSION"],
        "docker.elastic.co/elasticsearch/elasticsearch": ENV["ELASTIC_VERSION"],
        "docker.elastic.co/kibana/kibana": ENV["ELASTIC_VERSION"],
        "prom/prometheus": ENV["PROMETHEUS_VERSION"],
        "grafana/grafana": ENV["GRAFANA_VERSION"],
    }
    for workload in rendering.workloads():
        for c in containers(workload):
            if c["image"] == "auto":
                continue  # the Istio gateway: istiod's injector sets the mesh's proxy image
            image, _, tag = c["image"].rpartition(":")
            assert image and tag and tag != "latest", c["image"]
            if image in pins:
                assert tag == pins[image], f"{c['image']}: .env pins {pins[image]}"


def test_dev_secrets_are_the_env_files_dev_values(renderings: dict[str, Rendering]) -> None:
    import base64

    secrets = {s["metadata"]["name"].rsplit("-", 1)[0]: s for s in renderings["dev"].of_kind("Secret")}
    pg = {k: base64.b64decode(v).decode() for k, v in secrets["postgres-credentials"]["data"].items()}
    assert pg == {k: ENV[k] for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")}
    url = base64.b64decode(secrets["order-database"]["data"]["url"]).decode()
    assert url == f"postgresql://{ENV['POSTGRES_USER']}:{ENV['POSTGRES_PASSWORD']}@postgres:5432/{ENV['POSTGRES_DB']}"


def test_dev_prometheus_receives_remote_write_like_compose(renderings: dict[str, Rendering]) -> None:
    """The collector remote-writes every metric (with exemplars): the dev Prometheus runs the
    receiver and exemplar storage flags compose gives it."""
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    needed = {
        arg
        for arg in compose["services"]["prometheus"]["command"]
        if arg == "--web.enable-remote-write-receiver" or arg.startswith("--enable-feature=")
    }
    assert "--web.enable-remote-write-receiver" in needed
    (prometheus,) = [w for w in renderings["dev"].workloads() if app_name(w) == "prometheus"]
    (container,) = pod_spec(prometheus)["containers"]
    assert needed <= set(container["args"]), needed - set(container["args"])


def test_every_service_pod_names_itself_in_its_resource(rendering: Rendering) -> None:
    """k8s_attributes finds the sending Pod by k8s.pod.uid (then k8s.pod.ip) before the connection's
    address, which behind an Istio sidecar is 127.0.0.6: each service passes both from the downward
    API into OTEL_RESOURCE_ATTRIBUTES, beside the environment's name the collector also uses."""
    (collector,) = pod_spec(rendering.named("Deployment", "otel-collector"))["containers"]
    environment = container_env(rendering, collector)["DEPLOYMENT_ENVIRONMENT"]
    assert environment == ("kind" if rendering.overlay.startswith("dev") else "kubernetes")
    for name in APP:
        (c,) = pod_spec(rendering.named("Deployment", name))["containers"]
        value = container_env(rendering, c)["OTEL_RESOURCE_ATTRIBUTES"]
        attributes = dict(pair.split("=", 1) for pair in value.split(","))
        assert attributes == {
            "deployment.environment.name": environment,
            "k8s.pod.uid": "<fieldRef:metadata.uid>",
            "k8s.pod.ip": "<fieldRef:status.podIP>",
        }, f"{rendering.overlay}: {name}: {value}"


def test_identity_signs_with_keys_from_a_secret(rendering: Rendering, tmp_path: Path) -> None:
    """A key generated at start-up dies with the Pod, and the JWKS cached by verifiers (istiod for
    ~20 min) no longer knows the new one: the keys are a Secret in every overlay."""
    pod = pod_spec(rendering.named("Deployment", "identity"))
    (c,) = pod["containers"]
    keys_dir = container_env(rendering, c)["IDENTITY_KEYS_DIR"]
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == keys_dir]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert set(volume) == {"name", "secret"}, f"{rendering.overlay}: the keys are not a Secret: {volume}"
    secret = volume["secret"]["secretName"]
    assert secret.startswith("identity-signing-keys")
    if rendering.overlay.startswith("production"):
        return  # the operator's Secret (production ships none)
    files = data_of(rendering, "Secret", secret)
    for kid_file, pem in files.items():
        (tmp_path / kid_file).write_text(pem)
    ring = KeyRing(tmp_path, allow_generate=True)
    ring.reload()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files), "identity generated a key of its own"
    assert ring.signing_key.kid == "dev-kubernetes" and ring.signing_key.private_key is not None
    # DEV-ONLY: identity outside development refuses it.
    with pytest.raises(ConfigError, match="generated development keys"):
        KeyRing(tmp_path, allow_generate=False).reload()


def test_postgresql_receiver_component_adds_the_profile_and_its_login(tools: Tools, tmp_path: Path) -> None:
    """components/postgresql-receiver (opt-in; the collector built here lacks the receiver) adds the
    profile after the base and k8s configs, the database to read and the monitoring role's Secret."""
    k8s = copy_tree(tmp_path, TEST_INPUTS)
    (k8s / "overlays" / "dev-postgresql").mkdir()
    (k8s / "overlays" / "dev-postgresql" / "kustomization.yaml").write_text(
        "resources: [../dev]\ncomponents: [../../components/postgresql-receiver]\n"
    )
    (c,) = pod_spec(render(tools.kubectl, "dev-postgresql", k8s).named("Deployment", "otel-collector"))["containers"]
    assert [a for a in c["args"] if a.startswith("--config")][-1] == "--config=/etc/otelcol/postgresql.yml"
    env = {e["name"]: e for e in c["env"]}
    assert env["POSTGRESQL_ENDPOINT"]["value"] == "postgres:5432"
    assert env["POSTGRESQL_MONITOR_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"].startswith("postgres-monitoring-")


def test_elk_setup_job_needs_no_kibana_and_kibana_keeps_its_saved_objects(renderings: dict[str, Rendering]) -> None:
    """The Job finishes where Kibana is not deployed (the runtime tier scales it to zero); the saved
    objects are imported by a container beside Kibana, whenever Kibana runs."""
    dev = renderings["dev"]
    (job,) = dev.of_kind("Job")
    assert "KIBANA_URL" not in {e["name"] for c in containers(job) for e in c.get("env", [])}
    by_name = {c["name"]: c for c in containers(dev.named("Deployment", "kibana"))}
    keeper = by_name["saved-objects"]
    assert keeper["image"].split(":")[0] == job["spec"]["template"]["spec"]["containers"][0]["image"].split(":")[0]
    assert keeper["args"][0] == "--keep-kibana-current"
    assert {"name": "KIBANA_URL", "value": "http://localhost:5601"} in keeper["env"]


def test_node_agent_reads_only_the_pod_logs_read_only(rendering: Rendering) -> None:
    """The agent DaemonSet, in its own namespace, mounts the kubelet's /var/log/pods read-only and
    nothing else of the host; no other workload touches the host at all."""
    agent = rendering.named("DaemonSet", "otel-agent")
    assert agent["metadata"]["namespace"] == NODE_NAMESPACE
    pod = pod_spec(agent)
    host_volumes = {v["name"]: v["hostPath"] for v in pod["volumes"] if "hostPath" in v}
    assert host_volumes == {"pod-logs": {"path": "/var/log/pods", "type": "Directory"}}, host_volumes
    assert not {"hostNetwork", "hostPID", "hostIPC"} & {k for k, v in pod.items() if v}
    (c,) = pod["containers"]
    mounts = [m for m in c["volumeMounts"] if m["name"] in host_volumes]
    assert mounts == [{"name": "pod-logs", "mountPath": "/var/log/pods", "readOnly": True}], mounts
    assert all(m.get("readOnly") is True for m in c["volumeMounts"])
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}, "uid 0 is enough: the files' owner"
    assert c["securityContext"]["runAsGroup"] != 0
    assert pod["automountServiceAccountToken"] is False, "the agent needs no API access"
    for workload in rendering.workloads():
        if workload is not agent:
            assert not [v for v in pod_spec(workload).get("volumes", []) if "hostPath" in v], app_name(workload)
    namespaces = {n["metadata"]["name"]: n["metadata"]["labels"] for n in rendering.of_kind("Namespace")}
    assert namespaces[NODE_NAMESPACE]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert namespaces["sagascope"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # Nothing but the agent's own objects in its namespace.
    assert {(o["kind"], o["metadata"]["name"]) for o in rendering.objects
            if o["metadata"].get("namespace") == NODE_NAMESPACE and o["kind"] != "ConfigMap"} <= {
        ("ServiceAccount", "otel-agent"), ("DaemonSet", "otel-agent"), ("NetworkPolicy", "default-deny-all"),
        ("NetworkPolicy", "otel-agent"), ("NetworkPolicy", "allow-istiod"), ("Sidecar", "otel-agent"),
    }


def test_node_agent_runs_the_filelog_profile_and_forwards_to_the_gateway(rendering: Rendering) -> None:
    (c,) = pod_spec(rendering.named("DaemonSet", "otel-agent"))["containers"]
    assert [a for a in c["args"] if a.startswith("--config")] == [
        "--config=/etc/otelcol/filelog.yml",
        "--config=/etc/otelcol/agent.yml",
    ]
    (gateway,) = pod_spec(rendering.named("Deployment", "otel-collector"))["containers"]
    assert c["image"] == gateway["image"], "the agent runs the gateway's collector image"
    env = container_env(rendering, c)
    assert env["OTELCOL_GATEWAY_ENDPOINT"] == "otel-collector.sagascope:4317"
    assert env["FILELOG_INCLUDE"].startswith("/var/log/pods/")
    agent = yaml.safe_load(configmap(rendering, "otel-agent-config")["agent.yml"])
    assert agent["service"]["pipelines"] == {
        "logs": {"receivers": ["file_log"], "processors": ["memory_limiter", "batch"],
                 "exporters": ["otlp_grpc/gateway"]},
    }


def test_services_write_log_records_to_stdout_only(rendering: Rendering) -> None:
    """In the cluster the services' log records are their stdout JSON lines (read by the node
    agent), not an OTLP export as well: the same record would reach Elasticsearch twice."""
    for name in APP:
        (c,) = pod_spec(rendering.named("Deployment", name))["containers"]
        assert container_env(rendering, c)["SAGASCOPE_LOG_PATH"] == "filelog", f"{rendering.overlay}: {name}"
