"""The HTTP front door: ``POST /auth/login``, ``GET /.well-known/jwks.json``, ``GET /healthz``."""

from __future__ import annotations

import json
import logging
import ssl

from aiohttp import web

from sagascope.common.errors import InvalidArgument, ResourceExhausted, ServiceError
from sagascope.identity.keys import KeyRing
from sagascope.identity.login import LoginService

log = logging.getLogger(__name__)

# gRPC code -> (HTTP status, "error" field); bad JSON and a failed field check are both invalid_request.
_HTTP_ERRORS = {
    "INVALID_ARGUMENT": (400, "invalid_request"),
    "UNAUTHENTICATED": (401, "unauthenticated"),
    "RESOURCE_EXHAUSTED": (429, "too_many_requests"),
}
# A login body is two short strings; anything much larger is not a login.
MAX_BODY_BYTES = 16 * 1024
_NOT_AN_OBJECT = "the body must be a JSON object {username, password}"


class IdentityHttpServer:
    def __init__(
        self, login: LoginService, keys: KeyRing, host: str, port: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._login = login
        self._ssl_context = ssl_context
        self._keys = keys
        self._host = host
        self._port = port
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/auth/login", self._handle_login)
        app.router.add_get("/.well-known/jwks.json", self._handle_jwks)
        app.router.add_get("/healthz", self._handle_health)
        self._runner = web.AppRunner(app, access_log=None)
        self.port = 0

    async def start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=self._ssl_context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _handle_login(self, request: web.Request) -> web.Response:
        credentials = await _read_credentials(request)
        if isinstance(credentials, web.Response):
            return credentials
        username, password = credentials
        address = self._login.client_address(request.remote, request.headers.get("X-Forwarded-For"))
        try:
            issued = await self._login.login(username, password, address)
        except ServiceError as exc:
            return _service_error(exc)
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


async def _read_credentials(request: web.Request) -> tuple[str, str] | web.Response:
    """(username, password) from the JSON body, or the 4xx response saying what is wrong with it."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _too_large()
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:  # chunked bodies: aiohttp counts while reading
        return _too_large()
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: deeply nested arrays/objects
        return _error(400, "invalid_request", f"{_NOT_AN_OBJECT}; the body is not valid JSON", "body")
    if not isinstance(body, dict):
        return _error(400, "invalid_request", _NOT_AN_OBJECT, "body")
    username, password = body.get("username", ""), body.get("password", "")
    for field, value in (("username", username), ("password", password)):
        if not isinstance(value, str):
            return _error(400, "invalid_request", f"{field}: must be a string", field)
    return username, password


def _too_large() -> web.Response:
    return _error(413, "payload_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes", "body")


def _service_error(exc: ServiceError) -> web.Response:
    status, error = _HTTP_ERRORS.get(exc.code.name, (500, "internal"))
    headers = {}
    if isinstance(exc, ResourceExhausted):
        headers["Retry-After"] = str(exc.retry_after_seconds)
    field = exc.field if isinstance(exc, InvalidArgument) else None
    return _error(status, error, exc.message, field, headers)


def _error(
    status: int, error: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": error, "message": message, **({"field": field} if field else {})}
    return web.json_response(body, status=status, headers=headers)
