"""Where the collector's postgresql receiver finds the order database, from ORDER_DATABASE_URL."""

from __future__ import annotations

from sagascope.local.postgres_monitoring import PROFILE, MonitoringRole, collector_environment, collector_setup


def test_the_collector_reads_the_server_and_database_of_the_order_url_as_the_monitoring_role() -> None:
    env = collector_environment("postgresql://app:secret@db.example:6543/orders", MonitoringRole("mon", "pw"))
    assert env == {
        "POSTGRESQL_ENDPOINT": "db.example:6543",
        "POSTGRESQL_DATABASE": "orders",
        "POSTGRESQL_MONITOR_USER": "mon",
        "POSTGRESQL_MONITOR_PASSWORD": "pw",
    }
    assert "secret" not in env.values()  # never the application's own password


def test_no_database_view_on_sqlite_without_the_receiver_or_without_the_role() -> None:
    said: list[str] = []
    built = {"otlp", "prometheus", "postgresql"}
    assert collector_setup("sqlite:///var/order/orders.db", said.append, built) == ([], {})
    assert collector_setup("", said.append, built) == ([], {})
    assert said == []
    # a collector built without the receiver (the local build here): said, and no profile
    assert collector_setup("postgresql://postgres@127.0.0.1:1/orders", said.append, {"otlp"}) == ([], {})
    assert len(said) == 1 and "no postgresql receiver" in said[0], said
    # nothing listens on port 1: psql fails, the stack is told why and runs without the profile
    assert collector_setup("postgresql://postgres@127.0.0.1:1/orders", said.append, built) == ([], {})
    assert len(said) == 2 and "monitoring role could not be created" in said[1], said
    assert PROFILE == "postgresql"
