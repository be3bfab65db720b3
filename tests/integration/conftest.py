"""Fixtures for the integration tier: real PostgreSQL, real nx-27017, real gRPC sockets."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support import postgres

REQUIRE_POSTGRES = os.environ.get("SAGASCOPE_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[str]:
    """A PostgreSQL cluster for the whole run: SAGASCOPE_TEST_POSTGRES_URL (CI's service
    container) or a throwaway one made with initdb. Skips with the reason if neither is
    possible — unless SAGASCOPE_REQUIRE_POSTGRES=1, where that is a failure."""
    external = os.environ.get("SAGASCOPE_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    reason = postgres.unavailable_reason()
    if reason:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL tier required but unavailable: {reason}")
        pytest.skip(f"PostgreSQL tier skipped: {reason}")
    with postgres.throwaway_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'orders.db'}"
    cluster = request.getfixturevalue("pg_cluster")
    return postgres.fresh_database(cluster, f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def order_stack(tmp_path, database_url) -> AsyncIterator[object]:  # type: ignore[no-untyped-def]
    from tests.support.order_stack import running_order_stack

    async with running_order_stack(tmp_path, database_url) as stack:
        yield stack
