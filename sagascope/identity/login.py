"""The login use case shared by the gRPC and the HTTP front doors."""

from __future__ import annotations

import asyncio
import logging

from sagascope.common.errors import InvalidArgument, Unauthenticated
from sagascope.common.validation import require_id
from sagascope.identity.throttle import LoginThrottle
from sagascope.identity.tokens import IssuedToken, TokenIssuer
from sagascope.identity.users import UserStore

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "invalid username or password"
MAX_PASSWORD_LENGTH = 1024


class LoginService:
    def __init__(self, users: UserStore, issuer: TokenIssuer, throttle: LoginThrottle) -> None:
        self._users = users
        self._issuer = issuer
        self._throttle = throttle

    def client_address(self, peer: str | None, forwarded_for: str | None) -> str:
        """The caller's address for throttling (``X-Forwarded-For`` only from a trusted proxy)."""
        return self._throttle.client_address(peer, forwarded_for)

    async def login(self, username: str, password: str, client_address: str) -> IssuedToken:
        """A token for valid credentials; :class:`Unauthenticated` with one message for every failure,
        :class:`ResourceExhausted` when the username or ``client_address`` is throttled."""
        require_id(username, "username")
        if not password:
            raise InvalidArgument("password", "is required")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise InvalidArgument("password", f"is longer than {MAX_PASSWORD_LENGTH} characters")
        if not _is_encodable(password):
            raise InvalidArgument("password", "must be valid Unicode text (it holds a lone surrogate)")
        self._throttle.admit(username, client_address)
        async with self._throttle.hashing_slot(username, client_address):
            # scrypt takes tens of milliseconds of CPU: keep it off the event loop.
            user = await asyncio.to_thread(self._users.authenticate, username, password)
        if user is None:
            log.info("login refused for %r", username)
            raise Unauthenticated(INVALID_CREDENTIALS)
        self._throttle.succeeded(username)
        return self._issuer.issue(user.username, user.roles)


def _is_encodable(text: str) -> bool:
    """JSON can carry lone surrogates (``"\\ud800"``) that no UTF-8 encoder accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
