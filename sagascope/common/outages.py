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


def is_backend_outage(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, _OUTAGE_TYPES):
        return True
    # asyncpg's "connection was closed in the middle of operation" arrives as a DBAPIError wrapping
    # a driver error that is a ConnectionError/OSError underneath.
    cause = exc.__cause__ or exc.__context__
    return isinstance(exc, DBAPIError) and isinstance(cause, (ConnectionError, OSError))
