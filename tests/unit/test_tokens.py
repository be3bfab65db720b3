"""Token issuing (identity) and verification (sagascope.common.auth), without sockets."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from sagascope.common.auth import AuthSettings, JwksCache, TokenVerifier, bearer_token
from sagascope.common.errors import Unauthenticated
from sagascope.identity.keys import KeyRing, generate_key
from sagascope.identity.tokens import TokenIssuer

ISSUER, AUDIENCE = "sagascope-identity", "sagascope"


class StaticJwks(JwksCache):
    """A JwksCache whose keys come from a KeyRing instead of HTTP."""

    def __init__(self, ring: KeyRing) -> None:
        super().__init__("http://unused.invalid/jwks.json")
        self.ring = ring

    async def get_key(self, kid: str) -> jwt.PyJWK:
        for key in self.ring.keys:
            if key.kid == kid:
                return jwt.PyJWK(key.jwk())
        raise Unauthenticated("token is signed with an unknown key id (kid)")


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    ring = KeyRing(tmp_path_factory.mktemp("keys"), allow_generate=True)
    ring.reload()
    return ring


@pytest.fixture
def issuer(ring: KeyRing) -> TokenIssuer:
    return TokenIssuer(ring, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=900)


@pytest.fixture
def verifier(ring: KeyRing) -> TokenVerifier:
    return TokenVerifier(
        AuthSettings(jwks_url="http://unused.invalid/", issuer=ISSUER, audience=AUDIENCE), StaticJwks(ring)
    )


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 300,
        "jti": "j1",
        "roles": ["orders.read"],
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(ring: KeyRing, claims: dict[str, Any], **headers: Any) -> str:
    key = ring.signing_key
    return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid, **headers})


def _forge(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None = None) -> str:
    from tests.support.identity import forge_token

    return forge_token(header, claims, secret)


def test_issued_token_carries_the_contract_claims(ring: KeyRing, issuer: TokenIssuer) -> None:
    before = int(time.time())
    issued = issuer.issue("alice", {"orders.write", "orders.read"})
    header = jwt.get_unverified_header(issued.access_token)
    assert header["alg"] == "RS256" and header["kid"] == ring.signing_key.kid
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert set(claims) == {"iss", "aud", "sub", "iat", "exp", "jti", "roles"}
    assert (claims["iss"], claims["aud"], claims["sub"]) == (ISSUER, AUDIENCE, "alice")
    assert claims["roles"] == ["orders.read", "orders.write"]
    assert claims["exp"] - claims["iat"] == 900 and claims["iat"] >= before
    assert issued.expires_in == 900 and issued.token_type == "Bearer"
    assert issuer.issue("alice", []).access_token != issued.access_token  # fresh jti every time
    other = jwt.decode(issuer.issue("a", []).access_token, options={"verify_signature": False})
    assert other["jti"] != claims["jti"]


async def test_verifier_accepts_an_issued_token(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    issued = issuer.issue("bob", ["orders.read", "orders.write"])
    principal = await verifier.verify(issued.access_token)
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert principal.subject == "bob"
    assert principal.roles == frozenset({"orders.read", "orders.write"})
    assert principal.token_id == claims["jti"]


async def test_verifier_refuses_bad_tokens(ring: KeyRing, verifier: TokenVerifier) -> None:
    kid = ring.signing_key.kid
    public_pem = ring.signing_key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    good = _sign(ring, _claims())
    head, payload, signature = good.split(".")
    tampered_payload = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(b'"alice"', b'"admin"')
    ).decode()
    cases = {
        "alg none": (_forge({"alg": "none", "kid": kid}, _claims()), "algorithm 'none'"),
        "HS256 with the public key": (_forge({"alg": "HS256", "kid": kid}, _claims(), public_pem), "'HS256'"),
        "expired": (
            _sign(ring, _claims(iat=int(time.time()) - 4000, exp=int(time.time()) - 3600)),
            "expired",
        ),
        "wrong audience": (_sign(ring, _claims(aud="someone-else")), "audience"),
        "wrong issuer": (_sign(ring, _claims(iss="evil")), "issuer"),
        "no jti": (_sign(ring, _claims(jti=None)), "'jti'"),
        "no sub": (_sign(ring, _claims(sub=None)), "'sub'"),
        "no exp": (_sign(ring, _claims(exp=None)), "'exp'"),
        "tampered payload": (f"{head}.{tampered_payload}.{signature}", "signature"),
        "tampered signature": (f"{head}.{payload}.{signature[:-6]}AAAAAA", "signature"),
        "unknown kid": (_sign(ring, _claims(), kid="nobody"), "unknown key"),
        "no kid": (_forge({"alg": "RS256"}, _claims()), "kid"),
        "garbage": ("not.a.jwt", "well-formed"),
        "empty": ("", "missing"),
        "roles not a list": (_sign(ring, _claims(roles="orders.admin")), "roles"),
    }
    for name, (token, message) in cases.items():
        try:
            await verifier.verify(token)
        except Unauthenticated as exc:
            assert re.search(message, exc.message), f"{name}: unexpected message {exc.message!r}"
        else:
            pytest.fail(f"{name}: the token was accepted")


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer abc") == "abc"
    for bad in [None, "", "Bearer", "Bearer ", "Basic abc", "abc", "Bearer a b"]:
        with pytest.raises(Unauthenticated):
            bearer_token(bad)


def test_key_ring_publishes_all_keys_and_signs_with_the_last(tmp_path: Path) -> None:
    generate_key(tmp_path, "2025-01-01")
    newer = generate_key(tmp_path, "2025-06-01")
    ring = KeyRing(tmp_path)
    ring.reload()
    assert [k.kid for k in ring.keys] == ["2025-01-01", "2025-06-01"]
    assert ring.signing_key.kid == "2025-06-01"
    jwk = ring.jwks()["keys"][1]
    assert (
        jwk["kty"] == "RSA" and jwk["alg"] == "RS256" and jwk["use"] == "sig" and jwk["kid"] == "2025-06-01"
    )
    assert jwt.PyJWK(jwk).key.public_numbers() == newer.public_key.public_numbers()
    pinned = KeyRing(tmp_path, signing_kid="2025-01-01")
    pinned.reload()
    assert pinned.signing_key.kid == "2025-01-01"
    assert (tmp_path / "2025-06-01.pem").stat().st_mode & 0o077 == 0  # private keys are not world-readable


def test_key_ring_keeps_public_only_keys_for_verification(tmp_path: Path) -> None:
    retired = generate_key(tmp_path, "b-retired")
    (tmp_path / "b-retired.pem").write_bytes(
        retired.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    generate_key(tmp_path, "a-current")
    ring = KeyRing(tmp_path)
    ring.reload()
    assert {k.kid for k in ring.keys} == {"a-current", "b-retired"}
    assert ring.signing_key.kid == "a-current"  # a public key cannot sign, even if it sorts last


def test_key_ring_generates_only_in_development(tmp_path: Path) -> None:
    from sagascope.common.config import ConfigError

    with pytest.raises(ConfigError, match=r"IDENTITY_KEYS_DIR .* holds no"):
        KeyRing(tmp_path / "prod").reload()
    dev = KeyRing(tmp_path / "dev", allow_generate=True)
    dev.reload()
    assert dev.signing_key.kid.startswith("dev-")
    assert list((tmp_path / "dev").glob("*.pem"))
    again = KeyRing(tmp_path / "dev", allow_generate=True)
    again.reload()
    assert again.signing_key.kid == dev.signing_key.kid  # persisted, not regenerated
    with pytest.raises(ConfigError, match=r"IDENTITY_KEYS_DIR .* generated development keys"):
        KeyRing(tmp_path / "dev").reload()
    with pytest.raises(ConfigError, match="IDENTITY_SIGNING_KID"):
        KeyRing(tmp_path / "dev", signing_kid="nope", allow_generate=True).reload()


class CountingJwks(StaticJwks):
    def __init__(self, ring: KeyRing) -> None:
        super().__init__(ring)
        self.lookups = 0

    async def get_key(self, kid: str) -> jwt.PyJWK:
        self.lookups += 1
        return await super().get_key(kid)


async def test_a_verified_token_is_remembered_only_until_it_expires(
    ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    jwks = CountingJwks(ring)
    verifier = TokenVerifier(AuthSettings(jwks_url="http://unused.invalid/", issuer=ISSUER, audience=AUDIENCE), jwks)
    token = _sign(ring, _claims(exp=int(time.time()) + 60))
    first = await verifier.verify(token)
    again = await verifier.verify(token)
    assert again == first and jwks.lookups == 1  # the second call skipped the signature check
    with pytest.raises(Unauthenticated):  # a forged twin is not a cache hit
        await verifier.verify(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))
    lookups = jwks.lookups
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 120)  # the cache's clock is past exp
    await verifier.verify(token)  # PyJWT's own clock still says valid; what matters is that it was asked
    assert jwks.lookups == lookups + 1  # past exp the cache is bypassed: the full check decides
