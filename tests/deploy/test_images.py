"""The images `make k8s-images` builds, run before any cluster exists (runc, tests/deploy/images.py).

Each runs as its manifest runs it — the manifest's user, a read-only root unless the manifest
allows a writable one, no capabilities, its environment and writable volumes — and is asked
what the manifest's probes ask. Skipped when the images are not built — failed where
SAGASCOPE_REQUIRE_K8S_IMAGES=1 (.ci/run, after `make k8s-images`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.deploy.images import POD_IP, ImagesUnavailable, Running, Spec, archives, image_config, run_image, run_once
from tests.deploy.render import REPO
from tests.deploy.test_dev_local import LOCAL, LOCAL_TAGS

OBSERVABILITY = REPO / "observability"


def ref(name: str) -> str:
    return f"{LOCAL}{name}:{LOCAL_TAGS[name]}"


def need(name: str) -> str:
    """The image's ref, or a skip (a failure where required) saying why it cannot run."""
    try:
        built = archives()
    except ImagesUnavailable as exc:
        built, why = {}, str(exc)
    else:
        why = f"{ref(name)} is not built (make k8s-images)"
    if ref(name) not in built:
        if os.environ.get("SAGASCOPE_REQUIRE_K8S_IMAGES") == "1":
            pytest.fail(why)
        pytest.skip(why)
    if os.geteuid() != 0:
        pytest.skip("running images with runc needs root")
    return ref(name)


Start = Callable[[str, Spec], Running]


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Start]:
    """started(name, spec) -> a Running container, stopped after the test."""
    with ExitStack() as stack:

        def start(name: str, spec: Spec) -> Running:
            return stack.enter_context(run_image(need(name), spec, tmp_path))

        yield start


def http_get(running: Running, url: str, expect: str = "", timeout: float = 120) -> str:
    """GET url from inside the container (every image here has the base's python3)."""
    code = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
    return running.wait_for("python3", "-c", code, timeout=timeout, expect=expect).stdout


@pytest.mark.parametrize("name", ["service", "elk-setup"])
def test_project_images_are_user_10001_and_run_on_a_read_only_root(name: str, tmp_path: Path) -> None:
    image = need(name)
    assert image_config(image)["User"] in {"10001", "10001:10001"}
    # the image's own entrypoint, as uid 10001 on a read-only root: the module loads and answers
    if name == "service":
        spec = Spec(uid=10001, gid=10001, args=["sagascope.order", "--help"])
        done = run_once(image, spec, tmp_path)
        assert done.returncode == 0 and "order-service" in done.stdout, done.stdout + done.stderr
    else:
        spec = Spec(uid=10001, gid=10001, entrypoint=["python", "-c", "import elasticsearch, urllib3; print('ok')"])
        done = run_once(image, spec, tmp_path)
        assert done.returncode == 0 and "ok" in done.stdout, done.stdout + done.stderr
    probe = "import os; open('/app-or-elk-write-test', 'w')"
    done = run_once(image, Spec(uid=10001, gid=10001, entrypoint=["python", "-c", probe]), tmp_path)
    assert done.returncode != 0 and "Read-only file system" in done.stderr, done.stderr


def test_postgres_initialises_from_the_manifest_environment(started: Start) -> None:
    env = {
        "POSTGRES_USER": "sagascope",
        "POSTGRES_PASSWORD": "image-test-password",
        "POSTGRES_DB": "orders",
        "PGDATA": "/var/lib/postgresql/data/pgdata",
    }
    pg = started(
        "postgres",
        Spec(uid=999, gid=999, env=env, writable=["/var/lib/postgresql/data", "/var/run/postgresql", "/tmp"]),
    )
    # the manifest's readiness probe, verbatim
    pg.wait_for("sh", "-c", 'pg_isready -U "$POSTGRES_USER" -d "$POSTGRES_DB"', timeout=120)
    # over TCP from a non-loopback address, as the order Pods connect: the password counts
    url = f"postgresql://sagascope:image-test-password@{POD_IP}:5432/orders"
    asked = pg.wait_for("psql", url, "-tAc", "select current_user || ' ' || current_database()", timeout=30)
    assert asked.stdout.strip() == "sagascope orders"
    wrong = pg.exec("psql", url.replace("image-test-password", "wrong"), "-c", "select 1")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr, wrong.stdout + wrong.stderr


def test_nx_27017_takes_the_manifest_args_and_answers_the_probe(started: Start) -> None:
    mongo = started(
        "nx-27017", Spec(uid=999, gid=999, args=["--bind_ip_all"], writable=["/data/db", "/data/configdb", "/tmp"])
    )
    probe = mongo.wait_for("mongosh", "--quiet", "--eval", "db.adminCommand('ping').ok", timeout=60)
    assert probe.stdout.strip() == "1"
    code = (
        "from pymongo import MongoClient; c = MongoClient('mongodb://127.0.0.1:27017');"
        "c.payments.p.insert_one({'amount': 5}); print(c.payments.p.count_documents({'amount': 5}))"
    )
    stored = mongo.exec("/opt/nx-27017/bin/python", "-c", code)
    assert stored.stdout.strip() == "1", stored.stderr
    assert "nx-27017.db" in mongo.exec("ls", "/data/db").stdout
    refused = mongo.exec("mongosh", "--quiet", "--eval", "db.dropDatabase()")
    assert refused.returncode == 2 and "only db.adminCommand('ping').ok" in refused.stderr


def test_prometheus_runs_the_repo_config_with_the_manifest_args(started: Start) -> None:
    args = [
        "--config.file=/etc/prometheus/prometheus.yml",
        "--storage.tsdb.path=/prometheus",
        "--storage.tsdb.retention.time=2d",
        "--web.enable-remote-write-receiver",
        "--enable-feature=exemplar-storage",
    ]
    prom = started(
        "prometheus",
        Spec(
            uid=65534,
            gid=65534,
            args=args,
            writable=["/prometheus"],
            binds={"/etc/prometheus": OBSERVABILITY / "prometheus"},
        ),
    )
    http_get(prom, "http://127.0.0.1:9090/-/ready", expect="Ready")
    rules = json.loads(http_get(prom, "http://127.0.0.1:9090/api/v1/rules"))
    assert rules["status"] == "success" and rules["data"]["groups"], "the repo's rule files were not loaded"


def test_elasticsearch_starts_single_node_with_the_manifest_settings(started: Start) -> None:
    env = {
        "ES_NETWORK_HOST": "0.0.0.0",
        "ES_JAVA_OPTS": "-Xms512m -Xmx512m",
        "node.store.allow_mmap": "false",
        "ingest.geoip.downloader.enabled": "false",
        "xpack.ml.enabled": "false",
    }
    es = started(
        "elasticsearch",
        Spec(
            uid=1000,
            gid=0,
            env=env,
            writable=["/usr/share/elasticsearch/data"],
            read_only_root=False,
            binds={"/usr/share/elasticsearch/config/elasticsearch.yml": OBSERVABILITY / "elk" / "elasticsearch.yml"},
        ),
    )
    health = json.loads(http_get(es, "http://127.0.0.1:9200/_cluster/health?local=true", expect="status", timeout=240))
    assert health["number_of_nodes"] == 1 and health["status"] in {"green", "yellow"}
    settings = json.loads(http_get(es, "http://127.0.0.1:9200/_nodes/_local/settings?flat_settings=true"))
    node = next(iter(settings["nodes"].values()))["settings"]
    assert node["node.store.allow_mmap"] == "false" and node["discovery.type"] == "single-node"


def test_jaeger_serves_the_repo_config(started: Start) -> None:
    jaeger = started(
        "jaeger",
        Spec(
            uid=10001,
            gid=10001,
            args=["--config", "/etc/jaeger/config.yaml"],
            binds={"/etc/jaeger": OBSERVABILITY / "jaeger"},
        ),
    )
    http_get(jaeger, "http://127.0.0.1:13133/status", timeout=60)
    services = json.loads(http_get(jaeger, "http://127.0.0.1:16686/api/services"))
    assert "data" in services


def test_collector_validates_the_k8s_config(tmp_path: Path) -> None:
    image = need("otelcol")
    assert image_config(image)["Entrypoint"] == ["/otelcol-contrib"]
    env = {
        "DEPLOYMENT_ENVIRONMENT": "kubernetes",
        "JAEGER_OTLP_ENDPOINT": "jaeger:4317",
        "ELASTICSEARCH_ENDPOINT": "http://elasticsearch:9200",
        "PROMETHEUS_REMOTE_WRITE_URL": "http://prometheus:9090/api/v1/write",
    }
    binds = {
        "/etc/otelcol/otelcol-config.yml": OBSERVABILITY / "otel-collector" / "otelcol-config.yml",
        "/etc/otelcol/k8s.yml": OBSERVABILITY / "otel-collector" / "profiles" / "k8s.yml",
    }
    args = ["validate", "--config=/etc/otelcol/otelcol-config.yml", "--config=/etc/otelcol/k8s.yml"]
    done = run_once(image, Spec(uid=10001, gid=10001, args=args, env=env, binds=binds), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
