"""A real identity service for tests: gRPC + HTTP in-process on ephemeral ports.

    async with running_identity(tmp_path) as identity:
        token = await identity.login("alice", DEMO_PASSWORDS["alice"])
        verifier = TokenVerifier(identity.auth_settings)

Uses the packaged demo users (passwords in :data:`DEMO_PASSWORDS`) and a fresh
keys directory under ``tmp_path`` (one generated key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt

from sagascope.api.identity.v1 import identity_pb2, identity_pb2_grpc
from sagascope.common.auth import AuthSettings
from sagascope.identity.keys import generate_key
from sagascope.identity.server import RunningIdentity, start_identity
from sagascope.identity.settings import DEMO_USERS_FILE, IdentitySettings
from sagascope.identity.throttle import ThrottleSettings

ISSUER = "sagascope-identity"
AUDIENCE = "sagascope"

DEMO_PASSWORDS: Mapping[str, str] = {
    "alice": "alice-dev-password",
    "bob": "bob-dev-password",
    "viewer": "viewer-dev-password",
    "admin": "admin-dev-password",
    "operator": "operator-dev-password",
    "order-service": "order-service-dev-secret",
}


def forge_token(
    header: Mapping[str, Any], claims: Mapping[str, Any], hmac_secret: bytes | None = None
) -> str:
    """A JWT built by hand: unsigned (``alg: none``) or HS256 with ``hmac_secret`` — for attack tests."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    signing_input = f"{part(json.dumps(dict(header)).encode())}.{part(json.dumps(dict(claims)).encode())}"
    if hmac_secret is None:
        return signing_input + "."
    signature = hmac.new(hmac_secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


@dataclass
class IdentityHandle:
    grpc_target: str
    http_url: str
    jwks_url: str
    auth_settings: AuthSettings
    keys_dir: Path
    service: RunningIdentity

    async def login(self, username: str, password: str) -> str:
        """An access token via the real gRPC Login (raises ``grpc.aio.AioRpcError`` when refused)."""
        async with grpc.aio.insecure_channel(self.grpc_target) as channel:
            reply = await identity_pb2_grpc.IdentityServiceStub(channel).Login(
                identity_pb2.LoginRequest(username=username, password=password), timeout=10
            )
        return reply.access_token

    def rotate_key(self) -> str:
        """Add a new key and make it the signing key (the old ones stay published); returns its kid."""
        kid = generate_key(self.keys_dir).kid
        self.service.keys.reload()
        assert self.service.keys.signing_key.kid == kid
        return kid

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
        """Sign arbitrary claims with the current signing key — for building bad tokens in tests."""
        key = self.service.keys.signing_key
        assert key.private_key is not None
        merged = {"kid": key.kid, **(headers or {})}
        return jwt.encode(dict(claims), key.private_key, algorithm="RS256", headers=merged)


@asynccontextmanager
async def running_identity(
    tmp_path: Path, *, token_ttl_seconds: int = 900, throttle: ThrottleSettings | None = None
) -> AsyncIterator[IdentityHandle]:
    keys_dir = tmp_path / "identity-keys"
    settings = IdentitySettings(
        host="127.0.0.1",
        grpc_port=0,
        http_port=0,
        metrics_port=0,
        users_file=DEMO_USERS_FILE,
        keys_dir=keys_dir,
        issuer=ISSUER,
        audience=AUDIENCE,
        token_ttl_seconds=token_ttl_seconds,
        environment="development",
        throttle=throttle or ThrottleSettings(),
    )
    service = await start_identity(settings)
    http_url = f"http://127.0.0.1:{service.http_port}"
    jwks_url = f"{http_url}/.well-known/jwks.json"
    try:
        yield IdentityHandle(
            grpc_target=f"127.0.0.1:{service.grpc_port}",
            http_url=http_url,
            jwks_url=jwks_url,
            auth_settings=AuthSettings(jwks_url=jwks_url, issuer=ISSUER, audience=AUDIENCE),
            keys_dir=keys_dir,
            service=service,
        )
    finally:
        await service.stop()
