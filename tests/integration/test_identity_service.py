"""The identity service over real gRPC and HTTP sockets, and the auth clients that talk to it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sagascope.api.identity.v1 import identity_pb2, identity_pb2_grpc
from sagascope.common.auth import JwksCache, ServiceTokenSource, TokenVerifier
from sagascope.common.errors import Unauthenticated, Unavailable
from tests.support.identity import DEMO_PASSWORDS, IdentityHandle, running_identity


@pytest.fixture
async def identity(tmp_path: Path) -> AsyncIterator[IdentityHandle]:
    async with running_identity(tmp_path) as handle:
        yield handle


@pytest.fixture
async def stub(identity: IdentityHandle) -> AsyncIterator[identity_pb2_grpc.IdentityServiceStub]:
    async with grpc.aio.insecure_channel(identity.grpc_target) as channel:
        yield identity_pb2_grpc.IdentityServiceStub(channel)


async def _login_error(
    stub: identity_pb2_grpc.IdentityServiceStub, username: str, password: str
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Login(identity_pb2.LoginRequest(username=username, password=password), timeout=10)
    return info.value


async def test_login_issues_a_token_that_verifies(identity: IdentityHandle, stub) -> None:
    reply = await stub.Login(
        identity_pb2.LoginRequest(username="admin", password=DEMO_PASSWORDS["admin"]), timeout=10
    )
    assert reply.token_type == "Bearer" and reply.expires_in == 900
    principal = await TokenVerifier(identity.auth_settings).verify(reply.access_token)
    assert principal.subject == "admin"
    assert principal.roles == frozenset({"orders.read", "orders.write", "orders.admin", "sagas.read", "sagas.operate"})
    assert principal.token_id


async def test_wrong_password_and_unknown_user_get_the_same_answer(identity: IdentityHandle, stub) -> None:
    wrong = await _login_error(stub, "alice", "not-her-password")
    unknown = await _login_error(stub, "mallory", "whatever")
    assert wrong.code() == unknown.code() == grpc.StatusCode.UNAUTHENTICATED
    assert wrong.details() == unknown.details() == "invalid username or password"


async def test_unknown_user_costs_about_as_much_as_a_wrong_password(stub) -> None:
    async def fastest(username: str) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            await _login_error(stub, username, "wrong-password")
            times.append(time.perf_counter() - start)
        return min(times)

    wrong, unknown = await fastest("alice"), await fastest("no-such-user")
    # Without the dummy hash an unknown user answers in ~1 ms against ~tens of ms for scrypt.
    assert unknown > 0.4 * wrong, (unknown, wrong)


async def test_login_validates_fields(stub) -> None:
    empty = await _login_error(stub, "", "x")
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT and "username" in empty.details()
    no_password = await _login_error(stub, "alice", "")
    assert no_password.code() == grpc.StatusCode.INVALID_ARGUMENT and "password" in no_password.details()


async def test_grpc_jwks_equals_the_http_document(identity: IdentityHandle, stub) -> None:
    reply = await stub.GetJwks(identity_pb2.GetJwksRequest(), timeout=10)
    async with aiohttp.ClientSession() as session, session.get(identity.jwks_url) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        body = await response.text()
    assert reply.jwks_json == body
    document = json.loads(body)
    assert [dict(kty=k.kty, kid=k.kid, use=k.use, alg=k.alg, n=k.n, e=k.e) for k in reply.keys] == document[
        "keys"
    ]
    assert len(document["keys"]) == 1 and document["keys"][0]["alg"] == "RS256"
    assert "d" not in document["keys"][0]  # never the private exponent


async def test_grpc_health_is_serving(identity: IdentityHandle) -> None:
    async with grpc.aio.insecure_channel(identity.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(
            health_pb2.HealthCheckRequest(service="sagascope.identity.v1.IdentityService")
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_http_login_and_errors(identity: IdentityHandle) -> None:
    url = f"{identity.http_url}/auth/login"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"username": "viewer", "password": DEMO_PASSWORDS["viewer"]}) as ok:
            assert ok.status == 200
            assert ok.headers["Cache-Control"] == "no-store"
            body = await ok.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 900
        principal = await TokenVerifier(identity.auth_settings).verify(body["access_token"])
        assert principal.subject == "viewer" and principal.roles == frozenset({"orders.read"})

        for creds in ({"username": "viewer", "password": "nope"}, {"username": "ghost", "password": "nope"}):
            async with session.post(url, json=creds) as refused:
                assert refused.status == 401
                assert await refused.json() == {
                    "error": "unauthenticated",
                    "message": "invalid username or password",
                }
        async with session.post(url, data=b"{not json", headers={"Content-Type": "application/json"}) as bad:
            assert bad.status == 400 and (await bad.json())["error"] == "invalid_request"
        async with session.post(url, json=["alice", "pw"]) as not_object:
            assert not_object.status == 400
        async with session.post(url, json={"password": "x"}) as missing:
            assert missing.status == 400
            assert await missing.json() == {
                    "error": "invalid_request",
                    "message": "username: is required",
                    "field": "username",
                }
        async with session.get(f"{identity.http_url}/healthz") as health:
            assert health.status == 200 and await health.json() == {"status": "ok"}


async def test_key_rotation_old_and_new_tokens_verify_and_unknown_kid_refetches(
    identity: IdentityHandle,
) -> None:
    now = [1000.0]
    cache = JwksCache(identity.jwks_url, clock=lambda: now[0])
    verifier = TokenVerifier(identity.auth_settings, cache)
    old_token = await identity.login("alice", DEMO_PASSWORDS["alice"])
    assert (await verifier.verify(old_token)).subject == "alice"
    assert cache.fetch_count == 1

    old_kid = jwt.get_unverified_header(old_token)["kid"]
    new_kid = identity.rotate_key()
    assert new_kid != old_kid
    async with grpc.aio.insecure_channel(identity.grpc_target) as channel:
        jwks = await identity_pb2_grpc.IdentityServiceStub(channel).GetJwks(identity_pb2.GetJwksRequest())
    assert {k.kid for k in jwks.keys} == {old_kid, new_kid}  # both active during the rotation

    now[0] += 10.0  # past the refetch rate limit, as a rotation some time after start-up would be
    new_token = await identity.login("bob", DEMO_PASSWORDS["bob"])
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    assert (await verifier.verify(new_token)).subject == "bob"
    assert cache.fetch_count == 2  # the unknown kid triggered exactly one refetch
    assert (await verifier.verify(old_token)).subject == "alice"  # the old key still verifies
    assert cache.fetch_count == 2


async def test_unknown_kid_refetches_at_most_once_per_interval(identity: IdentityHandle) -> None:
    now = [1000.0]
    cache = JwksCache(identity.jwks_url, min_refetch_seconds=5.0, clock=lambda: now[0])
    verifier = TokenVerifier(identity.auth_settings, cache)
    good = await identity.login("alice", DEMO_PASSWORDS["alice"])
    await verifier.verify(good)
    forged = identity.sign(
        {
            "iss": "sagascope-identity",
            "aud": "sagascope",
            "sub": "x",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
            "jti": "j",
        },
        headers={"kid": "not-a-real-kid"},
    )
    now[0] += 1.0
    for _ in range(5):
        with pytest.raises(Unauthenticated, match="unknown key"):
            await verifier.verify(forged)
    assert cache.fetch_count == 1  # within 5 s of the last fetch: no request storms
    now[0] += 6.0
    with pytest.raises(Unauthenticated, match="unknown key"):
        await verifier.verify(forged)
    assert cache.fetch_count == 2


async def test_jwks_unreachable_is_unavailable_not_unauthenticated(identity: IdentityHandle) -> None:
    token = await identity.login("alice", DEMO_PASSWORDS["alice"])
    verifier = TokenVerifier(identity.auth_settings, JwksCache("http://127.0.0.1:9/.well-known/jwks.json"))
    for _ in range(2):  # the second call is inside the refetch interval: still Unavailable
        with pytest.raises(Unavailable, match="signing keys"):
            await verifier.verify(token)


async def test_service_token_source_logs_in_once_and_caches(identity: IdentityHandle) -> None:
    now = [0.0]
    source = ServiceTokenSource(
        identity.grpc_target, "order-service", DEMO_PASSWORDS["order-service"], clock=lambda: now[0]
    )
    tokens = await asyncio.gather(*(source.token() for _ in range(10)))
    assert len(set(tokens)) == 1 and source.login_count == 1  # concurrent callers shared one login
    principal = await TokenVerifier(identity.auth_settings).verify(tokens[0])
    assert principal.subject == "order-service"
    assert principal.roles == frozenset({"payments.read", "payments.write"})
    assert await source.metadata() == (("authorization", f"Bearer {tokens[0]}"),)

    now[0] = 900 - 61  # still more than 60 s left
    assert await source.token() == tokens[0] and source.login_count == 1
    now[0] = 900 - 59  # within the refresh margin: log in again
    assert await source.token() != tokens[0] and source.login_count == 2
    assert "dev-secret" not in repr(source)


async def test_service_token_source_failures(identity: IdentityHandle) -> None:
    refused = ServiceTokenSource(identity.grpc_target, "order-service", "wrong")
    with pytest.raises(Unauthenticated, match="order-service"):
        await refused.token()
    unreachable = ServiceTokenSource("127.0.0.1:9", "order-service", "x", timeout_seconds=1.0)
    with pytest.raises(Unavailable):
        await unreachable.token()
