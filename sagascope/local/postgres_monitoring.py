"""The order database's monitoring, on this machine: the collector's PostgreSQL login and where
the postgresql receiver (observability/otel-collector/profiles/postgresql.yml) finds the database.

The role comes from observability/postgresql/monitoring-role.sql — the same file docker compose
and the Kubernetes dev overlay run at the database's first start — applied here with ``psql``
as the administrator of ORDER_DATABASE_URL. Its password is POSTGRES_MONITOR_PASSWORD, with a
DEV-ONLY default as in .env.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

ROLE_SQL = Path(__file__).resolve().parents[2] / "observability" / "postgresql" / "monitoring-role.sql"
MONITOR_USER = "sagascope_monitor"
DEV_MONITOR_PASSWORD = "dev-only-postgres-monitor-password"  # DEV-ONLY, = .env
# The collector profile for it (observability/otel-collector/profiles/<name>.yml).
PROFILE = "postgresql"


@dataclass(frozen=True)
class MonitoringRole:
    user: str = MONITOR_USER
    password: str = DEV_MONITOR_PASSWORD

    @classmethod
    def from_env(cls) -> MonitoringRole:
        return cls(
            os.environ.get("POSTGRES_MONITOR_USER", MONITOR_USER),
            os.environ.get("POSTGRES_MONITOR_PASSWORD", DEV_MONITOR_PASSWORD),
        )


def is_postgresql(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "postgresql"


def collector_environment(database_url: str, role: MonitoringRole) -> dict[str, str]:
    """What profiles/postgresql.yml expands: the server, the order database, the login."""
    url = make_url(database_url)
    return {
        "POSTGRESQL_ENDPOINT": f"{url.host or '127.0.0.1'}:{url.port or 5432}",
        "POSTGRESQL_DATABASE": url.database or "postgres",
        "POSTGRESQL_MONITOR_USER": role.user,
        "POSTGRESQL_MONITOR_PASSWORD": role.password,
    }


def _psql() -> str:
    found = shutil.which("psql") or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"), reverse=True)), None
    )
    if found is None:
        raise RuntimeError("psql not found: install the postgresql client to create the monitoring role")
    return found


def apply_monitoring_role(admin_url: str, role: MonitoringRole) -> None:
    """Run monitoring-role.sql as ``admin_url``'s user, in its server's ``postgres`` database
    (roles are per server; the receiver reads pg_stat_statements there). Idempotent."""
    url = make_url(admin_url).set(database="postgres", drivername="postgresql")
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    result = subprocess.run(
        [
            _psql(), "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres",
            "-d", "postgres",
            "-v", f"monitor_user={role.user}", "-v", f"monitor_password={role.password}",
            "-f", str(ROLE_SQL),
        ],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{ROLE_SQL.name} as {url.username}@{url.host}: {result.stderr.strip()}")


# The collector builder manifest cannot name the receiver here: every release of it imports
# contrib's internal/sqlquery module, which the module proxy reachable here does not serve. The
# contrib image (compose, Kubernetes) ships it.
NOT_BUILT_REASON = (
    "the locally built collector has no postgresql receiver (contrib's internal/sqlquery module, "
    "which it imports, is not on the module proxy here); compose and Kubernetes run the contrib image, which has it"
)


def collector_setup(
    database_url: str, say: Callable[[str], None], receivers: set[str]
) -> tuple[list[str], dict[str, str]]:
    """For a local stack whose orders are on ``database_url``, with a collector built with
    ``receivers``: the collector profiles and environment of the database's own view — after
    creating the monitoring role as the URL's user (who must be allowed to create roles). Nothing
    for SQLite; nothing, said through ``say``, when the collector lacks the receiver or the role
    cannot be made (the stack then runs without it)."""
    if not database_url or not is_postgresql(database_url):
        return [], {}
    if "postgresql" not in receivers:
        say(f"no PostgreSQL statistics: {NOT_BUILT_REASON}")
        return [], {}
    role = MonitoringRole.from_env()
    try:
        apply_monitoring_role(database_url, role)
    except RuntimeError as exc:
        say(f"no PostgreSQL statistics (the collector's monitoring role could not be created): {exc}")
        return [], {}
    return [PROFILE], collector_environment(database_url, role)
