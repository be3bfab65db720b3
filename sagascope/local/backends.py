"""The real observability backends as supervised local processes (no Docker).

Each reads the SAME config file docker compose mounts (observability/); only the endpoints
differ, through the environment variables the files expand (the collector and Jaeger
``${env:VAR:-default}``, Elasticsearch ``${VAR}``), with the local values from
:mod:`sagascope.local.topology`. Prometheus has no environment substitution: its compose
config is rendered into ``<state_dir>/prometheus/`` with each scrape job's target replaced by
the local one. The collector runs the base config plus the chosen profiles
(``observability/otel-collector/profiles/<name>.yml``, overlays merged by repeated ``--config``);
it scrapes the services' /metrics and remote-writes to Prometheus.

``make backends`` installs and builds them (scripts/backends/); where it put them is read from
``scripts/backends/paths.sh``. Logs: ``<state_dir>/<name>.log`` (default ``var/stack``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sagascope.local.services import Ports
from sagascope.local.supervisor import ManagedProcess, Supervisor, http_health, run_once
from sagascope.local.topology import (
    COLLECTOR,
    ELASTICSEARCH,
    JAEGER,
    PROMETHEUS,
    Listener,
    address,
    backend_environment,
)

REPO_ROOT = Path(__file__).resolve().parents[2]  # the configs live in the checkout, not the package

# Overlays in observability/otel-collector/profiles/ to choose on this machine: `sagascope stack
# --collector-profile NAME`. (filelog.yml comes with `--log-path filelog`, which also turns the
# services' OTLP log export off; k8s.yml needs a cluster.)
LOCAL_COLLECTOR_PROFILES = ("production",)
# How the services' logs reach the collector (`sagascope stack --log-path`): OTLP export, or
# their stdout JSON lines (the process logs) tailed by the file_log receiver.
LOG_PATHS = ("otlp", "filelog")

# Prometheus scrape jobs (observability/prometheus/prometheus.yml) and their local ports. The
# services are not among them: the collector scrapes those (its prometheus receiver).
_SCRAPE_PORTS: dict[str, Callable[[Ports], int]] = {
    "otel-collector": lambda p: COLLECTOR.metrics.port,
    "prometheus": lambda p: PROMETHEUS.web.port,
}


def collector_configs(
    profiles: Sequence[str] = (), overlays: Sequence[Path] = (), repo: Path = REPO_ROOT
) -> list[Path]:
    """The base collector config, then each profile's overlay, then any extra overlay files."""
    base = repo / "observability" / "otel-collector"
    files = [base / "otelcol-config.yml"]
    for name in profiles:
        path = base / "profiles" / f"{name}.yml"
        if not path.is_file():
            known = sorted(p.stem for p in (base / "profiles").glob("*.yml"))
            raise ValueError(f"no collector profile {name!r} (known: {', '.join(known)})")
        files.append(path)
    return files + [Path(o) for o in overlays]


def collector_scrape_environment(ports: Ports, service_logs: Path | None = None) -> dict[str, str]:
    """What the collector config expands to scrape the local services (and, for the file_log
    receiver, which files hold their JSON log lines)."""
    env = {
        "IDENTITY_METRICS_TARGET": address(ports.identity_metrics),
        "ORDER_METRICS_TARGET": address(ports.order_metrics),
        "PAYMENT_METRICS_TARGET": address(ports.payment_metrics),
    }
    if service_logs is not None:
        env["FILELOG_INCLUDE"] = str(service_logs.resolve() / "*.log")
    return env


class BackendsNotInstalled(RuntimeError):
    """``make backends`` has not built or installed one of them."""


@dataclass(frozen=True)
class Installed:
    """Where ``make backends`` put each backend (scripts/backends/paths.sh)."""

    otelcol_bin: Path
    jaeger_bin: Path
    es_home: Path | None
    es_java_home: str
    es_java_heap: str
    es_user: str
    elk_setup_python: Path

    @classmethod
    def read(cls, repo: Path = REPO_ROOT) -> Installed:
        out = subprocess.run(
            ["bash", str(repo / "scripts" / "backends" / "paths.sh")],
            check=True, capture_output=True, text=True,
        ).stdout
        values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        return cls(
            otelcol_bin=Path(values["OTELCOL_BIN"]),
            jaeger_bin=Path(values["JAEGER_BIN"]),
            es_home=Path(values["ES_HOME"]) if values.get("ES_HOME") else None,
            es_java_home=values.get("ES_JAVA_HOME", ""),
            es_java_heap=values["ES_JAVA_HEAP"],
            es_user=values["ES_USER"],
            elk_setup_python=Path(values["ELK_SETUP_PYTHON"]),
        )

    def collector_components(self, kind: str) -> set[str]:
        """The component types of ``kind`` ("receivers", "exporters", ...) in the built collector
        (``otelcol components``); empty when it is not built."""
        if not os.access(self.otelcol_bin, os.X_OK):
            return set()
        import yaml  # dev extra; only the local stack needs it

        out = subprocess.run([str(self.otelcol_bin), "components"], capture_output=True, text=True, check=True).stdout
        return {str(entry["name"]) for entry in (yaml.safe_load(out) or {}).get(kind) or []}

    def check(self) -> None:
        missing = []
        if not os.access(self.otelcol_bin, os.X_OK):
            missing.append(f"the collector ({self.otelcol_bin})")
        if not os.access(self.jaeger_bin, os.X_OK):
            missing.append(f"Jaeger ({self.jaeger_bin})")
        if self.es_home is None or not (self.es_home / "bin" / "elasticsearch").is_file():
            missing.append("Elasticsearch")
        if not self.es_java_home:
            missing.append("a JDK for Elasticsearch (or set ES_JAVA_HOME)")
        if shutil.which("prometheus") is None:
            missing.append("prometheus")
        if not self.elk_setup_python.is_file():
            missing.append(f"the ELK set-up venv ({self.elk_setup_python})")
        if missing:
            raise BackendsNotInstalled(f"not installed: {', '.join(missing)}; run `make backends`")


def render_prometheus_config(source: Path, dest_dir: Path, ports: Ports) -> Path:
    """The compose config with every scrape job pointed at its local port and the rule files
    referenced where they are; a job with no local target is an error, not a silent miss."""
    import yaml  # dev extra; only the local stack needs it

    config = yaml.safe_load(source.read_text())
    for job in config.get("scrape_configs", []):
        name = job["job_name"]
        if name not in _SCRAPE_PORTS:
            raise ValueError(f"{source}: scrape job {name!r} has no local target in {__name__}._SCRAPE_PORTS")
        for static in job.get("static_configs", []):
            static["targets"] = [address(_SCRAPE_PORTS[name](ports))]
    # Patterns (``*.rules.yml``) expanded here, so the rendered file names each rule file it loads.
    config["rule_files"] = [
        str(path.resolve()) for rule in config.get("rule_files", []) for path in sorted(source.parent.glob(rule))
    ]
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / "prometheus.yml"
    header = f"# Rendered from {source} by {__name__} for the local stack. Do not edit.\n"
    dest.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return dest


def _listens_on(*listeners: Listener) -> dict[str, int]:
    return {(lst.env or lst.port_env or lst.host_env or str(lst.port)): lst.port for lst in listeners}


@dataclass
class BackendStack:
    """Elasticsearch, Jaeger, the collector, Prometheus — then the Elasticsearch index set-up."""

    state_dir: Path
    ports: Ports = field(default_factory=Ports)  # the services' metrics ports the collector scrapes
    repo: Path = REPO_ROOT
    supervisor: Supervisor | None = None
    installed: Installed | None = None
    names: list[str] = field(default_factory=list)
    # Collector profiles (observability/otel-collector/profiles/<name>.yml) and extra overlays.
    collector_profiles: Sequence[str] = ()
    collector_overlays: Sequence[Path] = ()
    # The services' log directory (LocalStack's <state_dir>/logs), for the file_log receiver.
    service_logs: Path | None = None
    # More environment for the collector (e.g. TAIL_SAMPLING_PERCENTAGE).
    collector_env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state_dir = self.state_dir.resolve()
        if self.supervisor is None:
            self.supervisor = Supervisor(self.repo)
        if self.installed is None:
            self.installed = Installed.read(self.repo)
        self.installed.check()
        inst = self.installed
        obs = self.repo / "observability"
        env = {
            **os.environ,
            **backend_environment(os.environ.get("DEPLOYMENT_ENVIRONMENT") or "local"),
        }
        self._add(self._elasticsearch(inst, env))
        self._add(
            ManagedProcess(
                "jaeger",
                [str(inst.jaeger_bin), "--config", str(obs / "jaeger" / "config.yaml")],
                dict(env),
                self.state_dir / "jaeger.log",
                http_health(JAEGER.health.url + JAEGER.health_path),
                listens_on=_listens_on(*JAEGER.listeners()),
            )
        )
        # The collector after Jaeger and Elasticsearch: its exporters would retry, but this way
        # the first records go straight through.
        self._add(
            ManagedProcess(
                "otel-collector",
                self._collector_command(self.collector_profiles, self.collector_overlays),
                {**env, **collector_scrape_environment(self.ports, self.service_logs), **self.collector_env},
                self.state_dir / "otel-collector.log",
                http_health(COLLECTOR.health.url + COLLECTOR.health_path),
                listens_on=_listens_on(*COLLECTOR.listeners()),
            )
        )
        prom_dir = self.state_dir / "prometheus"
        prom_config = render_prometheus_config(obs / "prometheus" / "prometheus.yml", prom_dir, self.ports)
        self._add(
            ManagedProcess(
                "prometheus",
                [
                    "prometheus",
                    f"--config.file={prom_config}",
                    f"--storage.tsdb.path={prom_dir / 'data'}",
                    "--storage.tsdb.retention.time=1d",
                    f"--web.listen-address={PROMETHEUS.web.address}",
                    "--web.enable-lifecycle",
                    # the collector remote-writes every metric, exemplars included
                    "--web.enable-remote-write-receiver",
                    "--enable-feature=exemplar-storage",
                ],
                dict(env),
                self.state_dir / "prometheus.log",
                http_health(PROMETHEUS.web.url + PROMETHEUS.health_path),
                listens_on={"--web.listen-address": PROMETHEUS.web.port},
            )
        )

    def _collector_command(self, profiles: Sequence[str], overlays: Sequence[Path]) -> list[str]:
        assert self.installed is not None
        command = [str(self.installed.otelcol_bin)]
        for path in collector_configs(profiles, overlays, self.repo):
            command += ["--config", str(path)]
        return command

    async def restart_collector(
        self, profiles: Sequence[str], overlays: Sequence[Path] = (), env: Mapping[str, str] | None = None
    ) -> None:
        """Run the collector again with other profiles (the other backends keep running)."""
        assert self.supervisor is not None
        proc = self.supervisor.processes["otel-collector"]
        await self.supervisor.stop_one(proc.name)
        proc.command = self._collector_command(profiles, overlays)
        if env is not None:
            proc.env.update(env)
        self.collector_profiles, self.collector_overlays = tuple(profiles), tuple(overlays)
        await self.supervisor.start_one(proc.name, timeout=60)

    def _elasticsearch(self, inst: Installed, env: Mapping[str, str]) -> ManagedProcess:
        """A private config directory (the shared elasticsearch.yml, the distribution's JVM and
        log settings, our heap); run as the dedicated user when we are root (it refuses root)."""
        assert inst.es_home is not None
        home = self.state_dir / "elasticsearch"
        config = home / "config"
        (config / "jvm.options.d").mkdir(parents=True, exist_ok=True)
        for sub in ("data", "logs"):
            (home / sub).mkdir(exist_ok=True)
        shutil.copy(self.repo / "observability" / "elk" / "elasticsearch.yml", config / "elasticsearch.yml")
        for name in ("jvm.options", "log4j2.properties"):
            shutil.copy(inst.es_home / "config" / name, config / name)
        heap = inst.es_java_heap
        (config / "jvm.options.d" / "heap.options").write_text(f"-Xms{heap}\n-Xmx{heap}\n")
        es_env = {**env, "ES_JAVA_HOME": inst.es_java_home, "ES_PATH_CONF": str(config)}
        user = None
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(inst.es_user)
            except KeyError:
                raise BackendsNotInstalled(f"user {inst.es_user} missing: run `make backends`") from None
            for path in (home, *home.rglob("*")):
                os.chown(path, account.pw_uid, account.pw_gid)
            # What `runuser -u` would set; Popen's user= switches in the child itself, so no
            # wrapper process sits between our signals and the JVM.
            es_env.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
            user = account.pw_name
        return ManagedProcess(
            "elasticsearch",
            [
                str(inst.es_home / "bin" / "elasticsearch"),
                "-E", f"path.data={home / 'data'}",
                "-E", f"path.logs={home / 'logs'}",
            ],
            es_env,
            self.state_dir / "elasticsearch.log",
            http_health(ELASTICSEARCH.http.url + ELASTICSEARCH.health_path),
            listens_on={"http.port (elasticsearch.yml)": ELASTICSEARCH.http.port},
            cwd=home,
            user=user,
        )

    def _add(self, process: ManagedProcess) -> None:
        assert self.supervisor is not None
        self.supervisor.add(process)
        self.names.append(process.name)

    async def start(self, timeout: float = 180.0) -> None:
        """Start each and wait until healthy, then apply the index template (the set-up job docker
        compose runs; there is no Kibana locally, so it skips the saved objects)."""
        assert self.supervisor is not None and self.installed is not None
        await self.supervisor.start(self.names, timeout)
        try:
            await run_once(
                "elk set-up",
                [str(self.installed.elk_setup_python), str(self.repo / "observability" / "elk" / "setup.py")],
                {**os.environ, "ELASTICSEARCH_URL": ELASTICSEARCH.http.url, "KIBANA_URL": ""},
                self.state_dir / "elk-setup.log",
            )
        except BaseException:
            await self.stop()
            raise

    async def stop(self, grace: float = 30.0) -> None:
        assert self.supervisor is not None
        await self.supervisor.stop(self.names, grace)

    def describe(self) -> str:
        return "\n".join(
            [
                f"  OTLP (services export here)  grpc {COLLECTOR.otlp_grpc.url}  http {COLLECTOR.otlp_http.url}",
                f"  collector profiles           {', '.join(self.collector_profiles) or 'base (every trace kept)'}",
                f"  collector health / metrics   {COLLECTOR.health.url}/  {COLLECTOR.metrics.url}/metrics",
                f"  Jaeger UI + query API        {JAEGER.query_http.url}/  (OTLP in on {JAEGER.otlp_grpc.address})",
                f"  Elasticsearch                {ELASTICSEARCH.http.url}/",
                f"  Prometheus                   {PROMETHEUS.web.url}/",
                f"  logs                         {self.state_dir}/<name>.log",
            ]
        )
