"""The HTTP front door: ``POST /auth/login``, ``GET /.well-known/jwks.json``, ``GET /healthz``."""

from __future__ import annotations

import logging

from aiohttp import web

from sagascope.common.errors import ServiceError
from sagascope.identity.keys import KeyRing
from sagascope.identity.login import LoginService

log = logging.getLogger(__name__)

# gRPC code -> (HTTP status, "error" field); bad JSON and a failed field check are both invalid_request.
_HTTP_ERRORS = {"INVALID_ARGUMENT": (400, "invalid_request"), "UNAUTHENTICATED": (401, "unauthenticated")}
_MAX_BODY_BYTES = 16 * 1024


class IdentityHttpServer:
    def __init__(self, login: LoginService, keys: KeyRing, host: str, port: int) -> None:
        self._login = login
        self._keys = keys
        self._host = host
        self._port = port
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.router.add_post("/auth/login", self._handle_login)
        app.router.add_get("/.well-known/jwks.json", self._handle_jwks)
        app.router.add_get("/healthz", self._handle_health)
        self._runner = web.AppRunner(app, access_log=None)
        self.port = 0

    async def start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _handle_login(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(400, "invalid_request", "the body must be a JSON object {username, password}")
        if not isinstance(body, dict):
            return _error(400, "invalid_request", "the body must be a JSON object {username, password}")
        username, password = body.get("username", ""), body.get("password", "")
        if not isinstance(username, str) or not isinstance(password, str):
            return _error(400, "invalid_request", "username and password must be strings")
        try:
            issued = await self._login.login(username, password)
        except ServiceError as exc:
            status, error = _HTTP_ERRORS.get(exc.code.name, (500, "internal"))
            return _error(status, error, exc.message)
        body = {
            "access_token": issued.access_token,
            "token_type": issued.token_type,
            "expires_in": issued.expires_in,
        }
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def _handle_jwks(self, request: web.Request) -> web.Response:
        # Short max-age: verifiers refetch on an unknown kid, so a rotation must not hide in a cache.
        return web.Response(
            text=self._keys.jwks_json(),
            content_type="application/json",
            headers={"Cache-Control": "public, max-age=60"},
        )

    async def _handle_health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


def _error(status: int, error: str, message: str) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status)
