"""Authentication and authorisation for every sagascope service — the one place auth lives.

* :class:`TokenVerifier` checks an RS256 access token from identity-service
  against the keys in its JWKS (:class:`JwksCache`) and returns a :class:`Principal`.
* :class:`AuthInterceptor` guards a gRPC server: ``authorization: Bearer <jwt>``
  metadata, a required role per method, health and reflection public, every
  other method refused; servicers read the caller with :func:`current_principal`.
* :class:`ServiceTokenSource` logs a service account in (order -> payment) and
  caches the token until shortly before it expires.

Tokens and passwords never reach a log line or an error message.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import ssl
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc
import jwt

from sagascope.common import correlation
from sagascope.common.config import env_str
from sagascope.common.errors import ServiceError, Unauthenticated, Unavailable
from sagascope.common.interceptors import UndecodableRequest, metadata_value
from sagascope.common.ports import default_jwks_url
from sagascope.common.tls import TlsSettings, client_ssl_context, open_channel

log = logging.getLogger(__name__)

ALGORITHM = "RS256"
REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "sub", "jti")
AUTHORIZATION = "authorization"
PUBLIC_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
# The saga admin API (sagascope.admin.v1): reads, and changes (retry, pause, resume, resolve).
SAGAS_READ = "sagas.read"
SAGAS_OPERATE = "sagas.operate"
_MAX_TOKEN_BYTES = 8192
_DENIED = grpc.StatusCode.PERMISSION_DENIED
_LEEWAY_SECONDS = 30


@dataclass(frozen=True)
class AuthSettings:
    jwks_url: str = default_jwks_url()
    issuer: str = "sagascope-identity"
    audience: str = "sagascope"

    @classmethod
    def from_env(cls, prefix: str) -> AuthSettings:
        """Read ``<prefix>_JWKS_URL``, ``<prefix>_JWT_ISSUER`` and ``<prefix>_JWT_AUDIENCE``."""
        defaults = cls()
        return cls(
            jwks_url=env_str(f"{prefix}_JWKS_URL", defaults.jwks_url),
            issuer=env_str(f"{prefix}_JWT_ISSUER", defaults.issuer),
            audience=env_str(f"{prefix}_JWT_AUDIENCE", defaults.audience),
        )


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str]
    token_id: str


_current_principal: ContextVar[Principal | None] = ContextVar("principal", default=None)


def current_principal() -> Principal | None:
    """The caller of the current gRPC request, set by :class:`AuthInterceptor`."""
    return _current_principal.get()


def caller() -> Principal:
    """The verified caller, for a servicer behind :class:`AuthInterceptor` (which guarantees one;
    refused loudly if it is missing)."""
    principal = _current_principal.get()
    if principal is None:
        raise Unauthenticated("no verified caller")
    return principal


class JwksCache:
    """The identity service's public keys, fetched over HTTP and cached.

    Keys are refetched when a token names an unknown kid (a rotation), at most
    once per ``min_refetch_seconds`` so a stream of forged kids cannot turn into
    a stream of requests, and in any case after ``max_age_seconds`` so a
    retired key stops verifying. If a fetch fails the last good keys stay in use.
    """

    def __init__(
        self,
        jwks_url: str,
        *,
        min_refetch_seconds: float = 5.0,
        max_age_seconds: float = 300.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        tls: TlsSettings | None = None,
    ) -> None:
        if not jwks_url.startswith(("http://", "https://")):
            raise ValueError(f"jwks_url must be an http(s) URL, got {jwks_url!r}")
        self.jwks_url = jwks_url
        self._min_refetch = min_refetch_seconds
        self._max_age = max_age_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        # https JWKS URLs are verified against the service's CA (and get its client certificate).
        self._ssl: ssl.SSLContext | None = client_ssl_context(tls)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._lock = asyncio.Lock()
        self.fetch_count = 0

    async def get_key(self, kid: str) -> jwt.PyJWK:
        """The key for ``kid``; raises :class:`Unauthenticated` if it is still unknown after a refetch."""
        if kid in self._keys and not self._stale():
            return self._keys[kid]
        async with self._lock:  # one fetch at a time; waiters reuse its result
            if kid not in self._keys or self._stale():
                if self._may_fetch():
                    await self._fetch()
            if not self._keys:  # never fetched successfully: the keys are unknown, not the token bad
                raise Unavailable(f"cannot fetch the token signing keys from {self.jwks_url}")
        key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated("token is signed with an unknown key id (kid)")
        return key

    async def refresh(self) -> None:
        async with self._lock:
            await self._fetch()

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at > self._max_age

    def _may_fetch(self) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= self._min_refetch

    async def _fetch(self) -> None:
        self._attempted_at = self._clock()
        self.fetch_count += 1
        try:
            document = await asyncio.wait_for(
                asyncio.to_thread(_get_json, self.jwks_url, self._ssl, self._timeout), self._timeout
            )
        except (OSError, http.client.HTTPException, TimeoutError, ValueError) as exc:
            log.warning("could not fetch JWKS from %s: %s", self.jwks_url, exc)
            if not self._keys:
                raise Unavailable(f"cannot fetch the token signing keys from {self.jwks_url}") from None
            return
        keys = _parse_jwks(document, self.jwks_url)
        if not keys:
            log.warning("JWKS from %s holds no usable RS256 keys; keeping the previous ones", self.jwks_url)
            if not self._keys:
                raise Unavailable(f"the JWKS at {self.jwks_url} holds no usable RS256 signing keys")
            return
        self._keys = keys
        self._fetched_at = self._clock()
        log.info("fetched JWKS from %s: kids %s", self.jwks_url, sorted(self._keys))


# A JWKS is a few KB; more than this is not one.
_MAX_JWKS_BYTES = 1 << 20
# No proxy from the environment (http_proxy ...): the JWKS is fetched from identity directly.
_DIRECT = urllib.request.ProxyHandler({})


def _get_json(url: str, context: ssl.SSLContext | None, timeout: float) -> Any:
    """GET ``url`` as JSON, in a worker thread (a fetch every few minutes at most).

    The standard library rather than an async HTTP client: this is the only HTTP request the order
    and payment services make, and aiohttp's import alone cost each of them ~9 MB of resident memory.
    ``context`` None verifies https against the system's CAs.
    """
    handlers: list[urllib.request.BaseHandler] = [_DIRECT]
    if url.startswith("https://"):
        handlers.append(urllib.request.HTTPSHandler(context=context or ssl.create_default_context()))
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.build_opener(*handlers).open(request, timeout=timeout) as response:
        body = response.read(_MAX_JWKS_BYTES + 1)
    if len(body) > _MAX_JWKS_BYTES:
        raise ValueError(f"the JWKS is larger than {_MAX_JWKS_BYTES} bytes")
    return json.loads(body)


def _parse_jwks(document: Any, url: str) -> dict[str, jwt.PyJWK]:
    keys: dict[str, jwt.PyJWK] = {}
    entries = document.get("keys") if isinstance(document, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or entry.get("kty") != "RSA":
            continue
        if entry.get("alg", ALGORITHM) != ALGORITHM or entry.get("use", "sig") != "sig":
            continue
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry, algorithm=ALGORITHM)
        except jwt.PyJWTError as exc:
            log.warning("skipping unusable key %r in JWKS from %s: %s", entry.get("kid"), url, exc)
    return keys


class TokenVerifier:
    # Verified tokens, remembered until they expire: a service token is presented on every
    # call, and an RSA signature check per call is the largest cost of auth.
    CACHE_SIZE = 4096

    def __init__(self, settings: AuthSettings, jwks: JwksCache | None = None, tls: TlsSettings | None = None) -> None:
        self.settings = settings
        self._jwks = jwks or JwksCache(settings.jwks_url, tls=tls)
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        """The token's principal; :class:`Unauthenticated` saying what is wrong otherwise."""
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires_at = cached
            if time.time() < expires_at:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]  # expired: the full check below says so, with leeway
        principal, expires_at = await self._verify_fully(token)
        self._verified[token] = (principal, expires_at)
        if len(self._verified) > self.CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    async def _verify_fully(self, token: str) -> tuple[Principal, float]:
        if not token:
            raise Unauthenticated("missing access token")
        if len(token) > _MAX_TOKEN_BYTES:
            raise Unauthenticated("access token is too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("access token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg != ALGORITHM:
            shown = alg[:16] if isinstance(alg, str) else type(alg).__name__
            raise Unauthenticated(f"token algorithm {shown!r} is not accepted; tokens must be {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("token header has no key id (kid)")
        key = await self._jwks.get_key(kid)
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[ALGORITHM],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token has expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"token audience is not {self.settings.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"token issuer is not {self.settings.issuer!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token lacks the required {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("token signature does not verify") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token is not valid yet (iat/nbf in the future)") from None
        except jwt.PyJWTError:
            raise Unauthenticated("access token is invalid") from None
        return _principal(claims), float(claims["exp"])


def _principal(claims: Mapping[str, Any]) -> Principal:
    subject, token_id, roles = claims.get("sub"), claims.get("jti"), claims.get("roles", [])
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("token subject (sub) must be a non-empty string")
    if not isinstance(token_id, str) or not token_id:
        raise Unauthenticated("token id (jti) must be a non-empty string")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise Unauthenticated("token roles claim must be a list of strings")
    return Principal(subject=subject, roles=frozenset(roles), token_id=token_id)


def bearer_token(authorization: str | None) -> str:
    """The token in an ``authorization: Bearer <token>`` value, or :class:`Unauthenticated`."""
    if authorization is None:
        raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token.strip():
        raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
    return token.strip()


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Requires a valid token carrying the method's role on every call except health and reflection.

    ``method_roles`` maps full method names (``/sagascope.payments.v1.PaymentService/ProcessPayment``)
    to the role a caller needs; a method missing from it is refused, so a new RPC
    is closed until someone decides who may call it.
    """

    def __init__(self, verifier: TokenVerifier, method_roles: Mapping[str, str]) -> None:
        for method in method_roles:
            if not method.startswith("/") or method.count("/") != 2:
                raise ValueError(f"method_roles key {method!r} is not '/package.Service/Method'")
        self._verifier = verifier
        self._method_roles = dict(method_roles)

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        method: str = handler_call_details.method
        if method.split("/")[1] in PUBLIC_SERVICES:
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # unknown method: gRPC answers UNIMPLEMENTED
        role = self._method_roles.get(method)
        if role is None:
            return _refusing(handler, _DENIED, "method not allowed")
        if handler.unary_unary is None:
            return _refusing(handler, _DENIED, "streaming methods are not allowed")
        authorization = metadata_value(handler_call_details.invocation_metadata, AUTHORIZATION)
        behavior = handler.unary_unary
        verifier = self._verifier

        async def authorized(request, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
            if isinstance(request, UndecodableRequest):
                # Refused as INVALID_ARGUMENT by the error-mapping interceptor (inner) before any
                # servicer runs; bytes that do not decode say nothing about the caller.
                return await behavior(request, context)
            try:
                principal = await verifier.verify(bearer_token(authorization))
            except ServiceError as exc:
                await context.abort(exc.code, exc.message)
            if role not in principal.roles:
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{principal.subject!r} lacks the role {role!r} required for {method}",
                )
            token = _current_principal.set(principal)
            try:
                return await behavior(request, context)
            finally:
                _current_principal.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            authorized,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _refusing(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def refuse(request, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
        await context.abort(code, message)

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(refuse, **kwargs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(refuse, **kwargs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(refuse, **kwargs)
    return grpc.stream_stream_rpc_method_handler(refuse, **kwargs)


class ServiceTokenSource:
    """A service account's access token for outgoing calls, logged in over gRPC and cached.

    The token is reused until ``refresh_margin_seconds`` (60) before it expires;
    concurrent callers share one login. Failures raise :class:`Unavailable`
    (identity unreachable; retryable) or :class:`Unauthenticated` (the account was refused).
    """

    def __init__(
        self,
        identity_target: str,
        username: str,
        password: str,
        *,
        refresh_margin_seconds: float = 60.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        tls: TlsSettings | None = None,
    ) -> None:
        if not identity_target or not username or not password:
            raise ValueError("identity_target, username and password are all required")
        self.identity_target = identity_target
        self.username = username
        self._password = password
        self._margin = refresh_margin_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._tls = tls
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()
        self.login_count = 0

    def __repr__(self) -> str:  # keep the password out of any accidental log line
        return f"ServiceTokenSource(identity_target={self.identity_target!r}, username={self.username!r})"

    async def token(self) -> str:
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        async with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                await self._login()
        assert self._token is not None
        return self._token

    async def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((AUTHORIZATION, f"Bearer {await self.token()}"),)

    def invalidate(self) -> None:
        """Forget the cached token (after a downstream UNAUTHENTICATED) so the next call logs in again."""
        self._token = None

    async def _login(self) -> None:
        # Imported here so the generated identity stubs load only in services that log in.
        from sagascope.api.identity.v1 import identity_pb2, identity_pb2_grpc

        self.login_count += 1
        try:
            async with open_channel(self.identity_target, self._tls) as channel:
                reply = await identity_pb2_grpc.IdentityServiceStub(channel).Login(
                    identity_pb2.LoginRequest(username=self.username, password=self._password),
                    timeout=self._timeout,
                    metadata=correlation.outgoing_metadata(),
                )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT):
                raise Unauthenticated(
                    f"service account {self.username!r} was refused by identity-service: {exc.details()}"
                ) from None
            raise Unavailable(
                f"identity-service at {self.identity_target} did not issue a token: {exc.code().name}"
            ) from None
        margin = min(self._margin, reply.expires_in / 2)
        self._token = reply.access_token
        self._refresh_at = self._clock() + reply.expires_in - margin
