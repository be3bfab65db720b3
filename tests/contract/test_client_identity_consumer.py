"""Consumer contract: sagascope-client -> identity-service, written to pacts/sagascope-client-identity-service.json.

- HTTP ``POST /auth/login``: a real Pact HTTP interaction, exercised against
  pact's own mock server (the bundled FFI). The client side is the few lines a
  client of the HTTP front door needs (:func:`http_login`).
- gRPC ``Login``: a V4 synchronous message (see grpc_pact.py), exercised through
  the CLI's real ``sagascope.cli.client.login`` over a real gRPC socket.

The credentials are the published development ones from demo_users.json.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from pact import Pact, match

from sagascope.api.identity.v1 import identity_pb2 as pb
from sagascope.cli.client import login
from tests.contract.grpc_pact import PACT_DIR, PactGrpcStub, grpc_interaction

LOGIN = "/sagascope.identity.v1.IdentityService/Login"
JWT_EXAMPLE = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImRldiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
JWT = match.regex(JWT_EXAMPLE, regex=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
ALICE = ("alice", "alice-dev-password")
USER_STATE = ("user alice exists with the demo password", {"username": "alice"})
KEY_STATE = ("a signing key is active", {})
GRPC_OK = "a gRPC Login with valid credentials"
GRPC_WRONG = "a gRPC Login with a wrong password"


@dataclass(frozen=True)
class HttpLogin:
    status: int
    body: dict[str, object]


def http_login(base_url: str, username: str, password: str) -> HttpLogin:
    """What a client of the HTTP front door does: POST JSON, read JSON back (errors included)."""
    request = urllib.request.Request(
        f"{base_url}/auth/login",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return HttpLogin(reply.status, json.loads(reply.read()))
    except urllib.error.HTTPError as exc:
        return HttpLogin(exc.code, json.loads(exc.read()))


@dataclass(frozen=True)
class Pacts:
    """One contract, built as two Pact objects and merged into one file: pact's HTTP mock server
    (FFI 0.5.12) panics on a pact that also holds synchronous messages, and once it has served a
    pact the FFI refuses to add interactions to it, so the HTTP part is declared up front."""

    http: Pact
    grpc: Pact


def declare_http(pact: Pact) -> None:
    for description, password, status, body in (
        ("an HTTP login with valid credentials", ALICE[1], 200,
         {"access_token": JWT, "token_type": "Bearer", "expires_in": match.int(900)}),
        ("an HTTP login with a wrong password", "not-the-password", 401,
         {"error": "unauthenticated", "message": "invalid username or password"}),
    ):
        interaction = pact.upon_receiving(description).given(*USER_STATE)
        if status == 200:
            interaction.given(KEY_STATE[0])
        (
            interaction.with_request("POST", "/auth/login")
            .with_header("Content-Type", "application/json")
            .with_body({"username": ALICE[0], "password": password}, "application/json")
            .will_respond_with(status)
            .with_body(body, "application/json")
        )
        if status == 200:
            interaction.with_header("Cache-Control", "no-store")


def declare_grpc(pact: Pact) -> None:
    grpc_interaction(
        pact, GRPC_OK, method=LOGIN,
        request=pb.LoginRequest(username=ALICE[0], password=ALICE[1]),
        response={"accessToken": JWT, "tokenType": "Bearer", "expiresIn": match.regex("900", regex=r"^[0-9]+$")},
        states=[USER_STATE, KEY_STATE],
    )
    grpc_interaction(
        pact, GRPC_WRONG, method=LOGIN,
        request=pb.LoginRequest(username=ALICE[0], password="not-the-password"),
        status=grpc.StatusCode.UNAUTHENTICATED,
        states=[USER_STATE],
    )


@pytest.fixture(scope="module")
def pacts() -> Iterator[Pacts]:
    pacts = Pacts(*(Pact("sagascope-client", "identity-service").with_specification("V4") for _ in "ab"))
    declare_http(pacts.http)
    declare_grpc(pacts.grpc)
    yield pacts
    pacts.http.write_file(PACT_DIR, overwrite=True)
    pacts.grpc.write_file(PACT_DIR, overwrite=False)  # merged into the same file


def test_http_login(pacts: Pacts) -> None:
    with pacts.http.serve(addr="127.0.0.1") as server:
        accepted = http_login(str(server.url), *ALICE)
        refused = http_login(str(server.url), ALICE[0], "not-the-password")
    # Leaving the block checks that the mock server saw exactly the declared HTTP requests.
    assert accepted.status == 200
    assert accepted.body["token_type"] == "Bearer"
    assert str(accepted.body["access_token"]).count(".") == 2
    assert refused.status == 401
    assert refused.body["error"] == "unauthenticated"


async def test_grpc_login_with_valid_credentials(pacts: Pacts) -> None:
    async with PactGrpcStub(pacts.grpc, only=GRPC_OK) as stub:
        token = await login(stub.target, *ALICE)  # the CLI's own login
    stub.assert_all_called()
    assert token == JWT_EXAMPLE


async def test_grpc_login_with_a_wrong_password(pacts: Pacts) -> None:
    async with PactGrpcStub(pacts.grpc, only=GRPC_WRONG) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await login(stub.target, ALICE[0], "not-the-password")
    stub.assert_all_called()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
