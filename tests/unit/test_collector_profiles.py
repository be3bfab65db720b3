"""The collector config and its profiles agree with each other, with the builder manifest and with
the local topology — no backend needed (the built collector validates them in
`make collector-validate` and the e2e tier)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from sagascope.local.backends import REPO_ROOT, collector_configs, collector_scrape_environment
from sagascope.local.services import Ports

yaml = pytest.importorskip("yaml")

COLLECTOR_DIR = REPO_ROOT / "observability" / "otel-collector"
KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")
# A config type that is an alias of a module with another name.
TYPE_ALIASES = {"otlp_grpc": "otlp"}


def load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def pipelines(config: dict[str, Any]) -> dict[str, Any]:
    return dict(config.get("service", {}).get("pipelines", {}))


BASE = load(COLLECTOR_DIR / "otelcol-config.yml")
PROFILES = {p.stem: load(p) for p in sorted((COLLECTOR_DIR / "profiles").glob("*.yml"))}
# The node agent's overlay (deploy/k8s/base/otel-agent.yaml), applied after profiles/filelog.yml.
AGENT = load(COLLECTOR_DIR / "agent.yml")


def test_the_profiles_are_the_documented_four() -> None:
    assert set(PROFILES) == {"production", "filelog", "k8s", "postgresql"}


def test_postgresql_adds_its_own_pipelines_into_the_same_backends() -> None:
    profile = PROFILES["postgresql"]
    restated = pipelines(profile)
    assert set(restated) == {"metrics/postgresql", "logs/postgresql"}  # new pipelines, no base list restated
    assert all(p["receivers"] == ["postgresql"] for p in restated.values())
    # the same remote write endpoint as the base's exporter, keeping the database/table labels
    own = profile["exporters"]["prometheus_remote_write/postgresql"]
    assert own["endpoint"] == BASE["exporters"]["prometheus_remote_write"]["endpoint"]
    assert own["resource_to_telemetry_conversion"] == {"enabled": True}
    assert restated["logs/postgresql"]["exporters"] == ["elasticsearch"]
    receiver = profile["receivers"]["postgresql"]
    assert receiver["events"] == {"db.server.top_query": {"enabled": True}, "db.server.query_sample": {"enabled": True}}
    assert {"postgresql.deadlocks", "postgresql.blks_hit", "postgresql.blks_read", "postgresql.database.locks"} <= set(
        m for m, v in receiver["metrics"].items() if v == {"enabled": True}
    )
    # The monitoring role has no table privilege, which EXPLAIN needs.
    assert receiver["top_query_collection"]["max_explain_each_interval"] == 0


def test_production_adds_tail_sampling_to_the_jaeger_pipeline_only() -> None:
    restated = pipelines(PROFILES["production"])
    assert set(restated) == {"traces/jaeger"}
    base = pipelines(BASE)["traces/jaeger"]["processors"]
    assert restated["traces/jaeger"]["processors"] == [*base[:-1], "tail_sampling", base[-1]]  # before batch
    # Behind the span-derived metrics: they see every span.
    assert "forward/sampled" in pipelines(BASE)["traces/in"]["exporters"]
    assert {"span_metrics", "service_graph"} <= set(pipelines(BASE)["traces/in"]["exporters"])
    policies = {p["name"]: p for p in PROFILES["production"]["processors"]["tail_sampling"]["policies"]}
    assert policies["compensations"]["boolean_attribute"]["key"] == "saga.compensation"
    assert policies["recovered"]["boolean_attribute"]["key"] == "saga.resumed"
    assert policies["errors"]["status_code"]["status_codes"] == ["ERROR"]


def test_k8s_adds_k8s_attributes_after_memory_limiter_in_every_receiving_pipeline() -> None:
    restated = pipelines(PROFILES["k8s"])
    base = pipelines(BASE)
    receiving = {name for name, p in base.items() if set(p["receivers"]) & set(BASE["receivers"])}
    assert set(restated) == receiving == {"traces/in", "metrics", "logs"}
    for name, pipeline in restated.items():
        assert pipeline["processors"] == ["memory_limiter", "k8s_attributes", *base[name]["processors"][1:]], name


def test_filelog_adds_the_file_log_receiver_to_the_logs_pipeline() -> None:
    restated = pipelines(PROFILES["filelog"])
    assert restated == {"logs": {"receivers": [*pipelines(BASE)["logs"]["receivers"], "file_log"]}}


def test_the_profiles_restate_disjoint_lists_so_they_combine() -> None:
    touched: dict[tuple[str, str], str] = {}
    for name, profile in PROFILES.items():
        for pipeline, keys in pipelines(profile).items():
            for key in keys:
                other = touched.get((pipeline, key))
                assert other is None, f"{name} and {other} both set {pipeline}.{key}"
                touched[(pipeline, key)] = name


def test_memory_limiter_comes_first_everywhere() -> None:
    for config in (BASE, *PROFILES.values(), AGENT):
        for name, pipeline in pipelines(config).items():
            if "processors" in pipeline:
                assert pipeline["processors"][0] == "memory_limiter", name


def _used_types(configs: list[dict[str, Any]]) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for config in configs:
        for kind in KINDS:
            for component_id in config.get(kind) or {}:
                used[kind].add(component_id.split("/")[0])
    return used


def _manifest_types() -> dict[str, set[str]]:
    manifest = load(COLLECTOR_DIR / "builder-config.yaml")
    names: dict[str, set[str]] = {}
    for kind in KINDS:
        suffix = kind[:-1]  # receivers -> receiver: otlpreceiver, forwardconnector, ...
        names[kind] = {
            re.sub(f"{suffix}$", "", entry["gomod"].split()[0].rsplit("/", 1)[1]) for entry in manifest.get(kind, [])
        }
    return names


# Components only the contrib image (compose, Kubernetes) has: the module proxy reachable here
# cannot build them (sagascope.local.postgres_monitoring.NOT_BUILT_REASON).
CONTRIB_IMAGE_ONLY = {"receivers": {"postgresql"}}


def test_the_builder_manifest_names_exactly_the_components_the_configs_use() -> None:
    used = _used_types([BASE, *PROFILES.values(), AGENT])
    manifest = _manifest_types()
    for kind in KINDS:
        wanted = {TYPE_ALIASES.get(t, t).replace("_", "") for t in used[kind]} - CONTRIB_IMAGE_ONLY.get(kind, set())
        assert wanted == manifest[kind], f"{kind}: configs use {sorted(wanted)}, manifest has {sorted(manifest[kind])}"


def test_a_contrib_image_only_component_is_used_by_its_own_profile_alone() -> None:
    """The local build lacks it: the base and the other profiles must run without it."""
    for kind, names in CONTRIB_IMAGE_ONLY.items():
        for name in names:
            users = {p for p, config in PROFILES.items() if name in {c.split("/")[0] for c in config.get(kind) or {}}}
            assert users == {name}, f"{kind} {name} used by {users}"
            assert name not in {c.split("/")[0] for c in BASE.get(kind) or {}}


def test_the_manifest_is_one_release_except_the_marked_proxy_gaps() -> None:
    text = (COLLECTOR_DIR / "builder-config.yaml").read_text()
    release = re.search(r"^  version: (\S+)$", text, re.M)
    assert release is not None
    env_release = re.search(r"^OTELCOL_VERSION=(\S+)$", (REPO_ROOT / ".env").read_text(), re.M)
    assert env_release is not None and env_release.group(1) == release.group(1)
    for line in re.findall(r"gomod: \S+ v0\.\S+.*", text):
        assert f" v{release.group(1)}" in line or "# proxy-gap: " in line, line


def test_collector_configs_layers_base_then_profiles_then_overlays(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yml"
    files = collector_configs(["production", "filelog"], [extra])
    assert files == [
        COLLECTOR_DIR / "otelcol-config.yml",
        COLLECTOR_DIR / "profiles" / "production.yml",
        COLLECTOR_DIR / "profiles" / "filelog.yml",
        extra,
    ]
    with pytest.raises(ValueError, match="no collector profile 'staging'"):
        collector_configs(["staging"])


def test_the_collector_scrapes_each_services_metrics_port(tmp_path: Path) -> None:
    ports = Ports.free()
    env = collector_scrape_environment(ports, tmp_path / "logs")
    assert env["ORDER_METRICS_TARGET"] == f"127.0.0.1:{ports.order_metrics}"
    assert env["PAYMENT_METRICS_TARGET"] == f"127.0.0.1:{ports.payment_metrics}"
    assert env["IDENTITY_METRICS_TARGET"] == f"127.0.0.1:{ports.identity_metrics}"
    assert env["FILELOG_INCLUDE"] == str((tmp_path / "logs").resolve() / "*.log")
    text = (COLLECTOR_DIR / "otelcol-config.yml").read_text() + (COLLECTOR_DIR / "profiles" / "filelog.yml").read_text()
    for variable in env:
        assert "${env:" + variable + ":-" in text, f"the collector config does not read {variable}"


def test_the_resource_processor_keeps_the_senders_environment() -> None:
    """A service's own deployment.environment.name (OTEL_RESOURCE_ATTRIBUTES) is kept; the collector's
    DEPLOYMENT_ENVIRONMENT fills it in only where it is missing (the scrapes): insert, not upsert."""
    actions = {a["key"]: a for a in BASE["processors"]["resource"]["attributes"]}
    environment = actions["deployment.environment.name"]
    assert environment["action"] == "insert"
    assert environment["value"].startswith("${env:DEPLOYMENT_ENVIRONMENT")


def test_k8s_attributes_asks_the_pod_before_the_connection() -> None:
    """Behind an Istio sidecar the connection comes from 127.0.0.6: the pod's own k8s.pod.uid (the
    downward API in deploy/k8s, or the log file's path) decides first, the connection last."""
    association = PROFILES["k8s"]["processors"]["k8s_attributes"]["pod_association"]
    sources = [s for rule in association for s in rule["sources"]]
    assert sources[0] == {"from": "resource_attribute", "name": "k8s.pod.uid"}
    assert sources[-1] == {"from": "connection"}


def test_k8s_scrapes_discovered_pods_not_the_bases_static_addresses() -> None:
    """The k8s profile replaces the base's scrape list (a list is replaced when configs merge): no
    static address there, each target a Pod found through the EndpointSlices of its namespace."""
    base = BASE["receivers"]["prometheus"]["config"]["scrape_configs"]
    assert all("static_configs" in job for job in base)
    (job,) = PROFILES["k8s"]["receivers"]["prometheus"]["config"]["scrape_configs"]
    assert "static_configs" not in job
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "endpointslice" and sd["namespaces"] == {"own_namespace": True}
    # The base's scrape protocols (OpenMetrics first: exemplars) are kept.
    assert job["scrape_protocols"] == base[0]["scrape_protocols"]


def test_the_agent_only_reads_files_and_forwards_them() -> None:
    """profiles/filelog.yml then agent.yml: the profile's receiver, one logs pipeline to the
    gateway over OTLP, no receiver that listens and no backend exporter."""
    assert pipelines(AGENT) == {
        "logs": {"receivers": ["file_log"], "processors": ["memory_limiter", "batch"],
                 "exporters": ["otlp_grpc/gateway"]},
    }
    assert set(AGENT["exporters"]) == {"otlp_grpc/gateway"}
    assert "receivers" not in AGENT, "the agent's one receiver is the filelog profile's, unchanged"
