"""Which exceptions mean "a backend we depend on is down right now", not "our code is wrong".

A lost database or MongoDB link mid-request is UNAVAILABLE (retryable with the same idempotency
key, and treated by callers as "may have been applied"), not INTERNAL with a traceback: the chaos
campaign cut those links hundreds of times and every one was answered INTERNAL before.
"""

from __future__ import annotations

import sys


def _outage_types() -> tuple[type[BaseException], ...]:
    """The outage errors of the drivers this process has loaded. Looked up, not imported: a process
    that never loaded a driver cannot raise its errors, and identity (no database) or payment (no
    SQL) must not pay for importing them at start-up. Only called for an exception already raised."""
    types: list[type[BaseException]] = []
    sqlalchemy_errors = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_errors is not None:
        # server gone, restarting, refusing connections; SQLite "database is locked"; the
        # driver's connection is closed
        types += [sqlalchemy_errors.OperationalError, sqlalchemy_errors.InterfaceError]
    pymongo_errors = sys.modules.get("pymongo.errors")
    if pymongo_errors is not None:
        # the MongoDB link broke (AutoReconnect, NetworkTimeout, NotPrimary ... are subclasses)
        types.append(pymongo_errors.ConnectionFailure)
    # a socket reset/refused below a driver that does not wrap it
    return (*types, ConnectionError, TimeoutError)


# SQLSTATE classes that mean the server, not the statement: 08 connection exception, 57P admin/
# crash shutdown and "cannot connect now" (a PostgreSQL restart in progress).
_OUTAGE_SQLSTATES = ("08", "57P")


def is_backend_outage(exc: BaseException) -> bool:
    sqlalchemy_errors = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_errors is not None and isinstance(exc, sqlalchemy_errors.DBAPIError):
        if exc.connection_invalidated:
            return True
    outage_types = _outage_types()
    # The driver's error may arrive bare or wrapped (asyncpg under SQLAlchemy): walk the chain.
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, outage_types):
            return True
        sqlstate = getattr(seen, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_OUTAGE_SQLSTATES):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
