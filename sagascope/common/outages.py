"""Which exceptions mean "a backend we depend on is down right now", not "our code is wrong".

A lost database or MongoDB link mid-request is UNAVAILABLE (retryable with the same idempotency
key, and treated by callers as "may have been applied"), not INTERNAL with a traceback: the chaos
campaign cut those links hundreds of times and every one was answered INTERNAL before.
"""

from __future__ import annotations

from pymongo.errors import AutoReconnect, ConnectionFailure
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

_OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    OperationalError,  # server gone, restarting, refusing connections; SQLite "database is locked"
    InterfaceError,  # the driver's connection is closed
    AutoReconnect,  # pymongo: the MongoDB link broke (NetworkTimeout, NotPrimary ... included)
    ConnectionFailure,
    ConnectionError,  # a socket reset/refused below a driver that does not wrap it
    TimeoutError,
)


# SQLSTATE classes that mean the server, not the statement: 08 connection exception, 57P admin/
# crash shutdown and "cannot connect now" (a PostgreSQL restart in progress).
_OUTAGE_SQLSTATES = ("08", "57P")


def is_backend_outage(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # The driver's error may arrive bare or wrapped (asyncpg under SQLAlchemy): walk the chain.
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, _OUTAGE_TYPES):
            return True
        sqlstate = getattr(seen, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_OUTAGE_SQLSTATES):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
