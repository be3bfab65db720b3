"""Provider verification: the real identity service honours pacts/sagascope-client-identity-service.json.

The HTTP interactions go to the service's real aiohttp server; the gRPC ones
(synchronous messages) go through grpc_pact.provider_message_handler to its real
gRPC server. Both run in-process (tests/support/identity.py) with the packaged
users file and a keys directory of their own; "a signing key is active" adds a
key to that directory through the service's key ring, and the token it then
issues must verify against the published JWKS with that key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from pact import Verifier

from sagascope.identity.users import UserStore
from tests.contract.grpc_pact import PACT_DIR, BackgroundLoop, provider_message_handler, verify_all
from tests.support.identity import DEMO_PASSWORDS, IdentityHandle, running_identity

PACT_FILE = PACT_DIR / "sagascope-client-identity-service.json"


@dataclass
class IdentityProvider:
    loop: BackgroundLoop
    identity: IdentityHandle
    channel: grpc.aio.Channel
    kids: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityProvider]:
    tmp: Path = tmp_path_factory.mktemp("identity-provider")
    loop = BackgroundLoop()
    stack = AsyncExitStack()

    async def start() -> IdentityProvider:
        identity = await stack.enter_async_context(running_identity(tmp))
        channel = grpc.aio.insecure_channel(identity.grpc_target)
        stack.push_async_callback(channel.close)
        return IdentityProvider(loop, identity, channel)

    try:
        yield loop.run(start(), timeout=60)
    finally:
        loop.run(stack.aclose(), timeout=30)
        loop.close()


def _state_handler(provider: IdentityProvider):  # type: ignore[no-untyped-def]
    users = UserStore.load(provider.identity.service.settings.users_file)  # the file the service serves

    def handler(state: str, action: str, parameters: dict[str, Any] | None) -> None:
        if action != "setup":
            return
        params = parameters or {}
        if state == "user alice exists with the demo password":
            username = str(params["username"])
            assert users.authenticate(username, DEMO_PASSWORDS[username]) is not None
        elif state == "a signing key is active":
            provider.kids.append(provider.identity.rotate_key())
        else:
            raise LookupError(f"unknown provider state {state!r}")

    return handler


def test_identity_service_honours_the_client_pact(provider: IdentityProvider) -> None:
    assert PACT_FILE.exists(), f"{PACT_FILE} is missing: run the consumer tests (tests/contract) first"
    verifier = (
        Verifier("identity-service", host="127.0.0.1")
        .add_transport(url=provider.identity.http_url)
        .message_handler(provider_message_handler(provider.loop, lambda: provider.channel, lambda: ()))
        .state_handler(_state_handler(provider), teardown=False)
        .add_source(PACT_FILE)
    )
    verify_all(verifier, PACT_FILE)
    assert provider.kids, "the signing-key state was never set up"


def test_tokens_are_signed_with_the_key_the_state_created(provider: IdentityProvider) -> None:
    """The state is real: after it, Login signs with the new key, published in the JWKS."""
    provider.identity.rotate_key()
    token = provider.loop.run(provider.identity.login("alice", DEMO_PASSWORDS["alice"]))
    kid = jwt.get_unverified_header(token)["kid"]
    jwks = json.loads(provider.identity.service.keys.jwks_json())
    assert kid == provider.identity.service.keys.signing_key.kid
    assert kid in {key["kid"] for key in jwks["keys"]}
