"""AuthInterceptor on a real gRPC server, verifying tokens from a real identity service."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sagascope.common.auth import AuthInterceptor, TokenVerifier, current_principal
from sagascope.common.server import GrpcServer, GrpcServerConfig
from tests.support.identity import DEMO_PASSWORDS, IdentityHandle, forge_token, running_identity

SERVICE = "sagascope.test.v1.Probe"
WHOAMI = f"/{SERVICE}/Whoami"  # needs orders.read
ADMIN = f"/{SERVICE}/Admin"  # needs orders.admin
UNMAPPED = f"/{SERVICE}/Unmapped"  # registered but absent from method_roles


async def _whoami(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    principal = current_principal()
    assert principal is not None
    return json.dumps(
        {"sub": principal.subject, "roles": sorted(principal.roles), "jti": principal.token_id}
    ).encode()


@dataclass
class Probe:
    identity: IdentityHandle
    channel: grpc.aio.Channel

    async def call(self, method: str, authorization: str | None) -> bytes:
        metadata = (("authorization", authorization),) if authorization is not None else ()
        return await self.channel.unary_unary(method)(b"", metadata=metadata, timeout=10)

    async def refused(self, method: str, authorization: str | None) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await self.call(method, authorization)
        return info.value

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": "sagascope-identity", "aud": "sagascope", "sub": "alice", "iat": now, "exp": now + 300,
            "jti": "test-jti", "roles": ["orders.read", "orders.write"],
        }  # fmt: skip
        claims.update(overrides)
        return claims


@pytest.fixture
async def probe(tmp_path: Path) -> AsyncIterator[Probe]:
    async with running_identity(tmp_path) as identity:
        interceptor = AuthInterceptor(
            TokenVerifier(identity.auth_settings), {WHOAMI: "orders.read", ADMIN: "orders.admin"}
        )
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(_whoami) for name in ("Whoami", "Admin", "Unmapped")
        }

        def register(server: grpc.aio.Server) -> None:
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

        server = GrpcServer(
            GrpcServerConfig(host="127.0.0.1", port=0, grace_seconds=1), [SERVICE], register, [interceptor]
        )
        port = await server.start()
        await server.set_serving()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield Probe(identity, channel)
        finally:
            await server.stop()


async def test_valid_token_passes_and_sets_the_principal(probe: Probe) -> None:
    token = await probe.identity.login("alice", DEMO_PASSWORDS["alice"])
    reply = json.loads(await probe.call(WHOAMI, f"Bearer {token}"))
    assert reply["sub"] == "alice"
    assert reply["roles"] == ["orders.read", "orders.write"]
    assert reply["jti"]


async def test_health_is_public(probe: Probe) -> None:
    reply = await health_pb2_grpc.HealthStub(probe.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "missing 'authorization: Bearer <token>'"),
        ("", "must be 'Bearer <token>'"),
        ("Basic YWxpY2U6cHc=", "must be 'Bearer <token>'"),
        ("Bearer", "must be 'Bearer <token>'"),
        ("Bearer not-a-jwt", "not a well-formed JWT"),
    ],
)
async def test_missing_or_malformed_authorization(
    probe: Probe, authorization: str | None, message: str
) -> None:
    error = await probe.refused(WHOAMI, authorization)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert message in error.details()


async def test_alg_none_is_refused(probe: Probe) -> None:
    kid = probe.identity.service.keys.signing_key.kid
    error = await probe.refused(WHOAMI, f"Bearer {forge_token({'alg': 'none', 'kid': kid}, probe.claims())}")
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "algorithm 'none'" in error.details()


async def test_hs256_signed_with_the_public_key_is_refused(probe: Probe) -> None:
    key = probe.identity.service.keys.signing_key
    public_pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = forge_token({"alg": "HS256", "typ": "JWT", "kid": key.kid}, probe.claims(), public_pem)
    error = await probe.refused(WHOAMI, f"Bearer {token}")
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "'HS256' is not accepted" in error.details()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}, "token has expired"),
        ({"aud": "another-audience"}, "audience is not 'sagascope'"),
        ({"iss": "https://evil.example"}, "issuer is not 'sagascope-identity'"),
    ],
    ids=["expired", "wrong-audience", "wrong-issuer"],
)
async def test_bad_claims_are_refused(probe: Probe, overrides: dict[str, Any], message: str) -> None:
    token = probe.identity.sign(probe.claims(**overrides))
    error = await probe.refused(WHOAMI, f"Bearer {token}")
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert message in error.details()


async def test_tampered_signature_is_refused(probe: Probe) -> None:
    token = await probe.identity.login("viewer", DEMO_PASSWORDS["viewer"])
    head, payload, signature = token.split(".")
    flipped = ("A" if signature[10] != "A" else "B").join([signature[:10], signature[11:]])
    error = await probe.refused(WHOAMI, f"Bearer {head}.{payload}.{flipped}")
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "signature does not verify" in error.details()


async def test_a_valid_token_without_the_role_is_permission_denied(probe: Probe) -> None:
    token = await probe.identity.login("alice", DEMO_PASSWORDS["alice"])
    error = await probe.refused(ADMIN, f"Bearer {token}")
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'orders.admin'" in error.details()
    admin = await probe.identity.login("admin", DEMO_PASSWORDS["admin"])
    assert json.loads(await probe.call(ADMIN, f"Bearer {admin}"))["sub"] == "admin"


async def test_a_method_missing_from_the_map_is_refused_even_with_a_token(probe: Probe) -> None:
    admin = await probe.identity.login("admin", DEMO_PASSWORDS["admin"])
    error = await probe.refused(UNMAPPED, f"Bearer {admin}")
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == "method not allowed"


async def test_an_unknown_method_stays_unimplemented(probe: Probe) -> None:
    error = await probe.refused(f"/{SERVICE}/Nope", None)
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
