"""The login use case shared by the gRPC and the HTTP front doors."""

from __future__ import annotations

import asyncio
import logging

from sagascope.common.errors import InvalidArgument, Unauthenticated
from sagascope.common.validation import require_id
from sagascope.identity.tokens import IssuedToken, TokenIssuer
from sagascope.identity.users import UserStore

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "invalid username or password"
MAX_PASSWORD_LENGTH = 1024


class LoginService:
    def __init__(self, users: UserStore, issuer: TokenIssuer) -> None:
        self._users = users
        self._issuer = issuer

    async def login(self, username: str, password: str) -> IssuedToken:
        """A token for valid credentials; :class:`Unauthenticated` with one message for every failure."""
        require_id(username, "username")
        if not password:
            raise InvalidArgument("password", "is required")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise InvalidArgument("password", f"is longer than {MAX_PASSWORD_LENGTH} characters")
        # scrypt takes tens of milliseconds of CPU: keep it off the event loop.
        user = await asyncio.to_thread(self._users.authenticate, username, password)
        if user is None:
            log.info("login refused for %r", username)
            raise Unauthenticated(INVALID_CREDENTIALS)
        return self._issuer.issue(user.username, user.roles)
