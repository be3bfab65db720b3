"""One URL setting for PostgreSQL (asyncpg) or SQLite (aiosqlite); migrations by Alembic."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sagascope.common.config import ConfigError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def async_url(url: str) -> str:
    """Accept plain ``postgresql://`` / ``sqlite:///`` URLs and pick the async driver."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    raise ConfigError(
        f"ORDER_DATABASE_URL: unsupported database {backend!r}; use postgresql:// or sqlite:///"
    )


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    url = async_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # WAL lets readers run beside the single writer; foreign keys are off by default in SQLite.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # No pool_pre_ping: it costs three round trips per checkout (~5 per saga). A connection that
    # died is invalidated by SQLAlchemy on the disconnect error; pool_recycle retires old ones.
    # No reset on return: every use goes through a SQLAlchemy Connection that ends its own
    # transaction (the saga writes and reads run in autocommit; claim_due's transactions commit or
    # roll back in their context manager, and Connection.close() rolls back one left open), so the
    # pool's extra DBAPI rollback per checkin would only be Python work (asyncpg sends nothing
    # when no transaction is open: pg_stat_statements shows no ROLLBACK either way).
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800, pool_reset_on_return=None
    )


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return config


async def migrate(url: str) -> None:
    """Upgrade to head. Runs in a worker thread because Alembic's env drives its own loop."""
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")


def main() -> None:
    """``python -m sagascope.order.database``: apply migrations to ORDER_DATABASE_URL and exit."""
    from sagascope.common.config import env_str

    asyncio.run(migrate(env_str("ORDER_DATABASE_URL", "sqlite:///var/order/orders.db")))


if __name__ == "__main__":
    main()
