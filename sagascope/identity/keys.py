"""The RSA key ring: every key in ``IDENTITY_KEYS_DIR`` is published, one of them signs.

Each key is a PEM file named ``<kid>.pem`` (a private key, or a public key that
still verifies but no longer signs while it rotates out). New tokens are signed
with ``IDENTITY_SIGNING_KID``, or else with the private key whose kid sorts
last — so naming keys by date (``2025-06-01.pem``) rotates by dropping a new
file in and reloading (SIGHUP). In development an empty directory gets a
generated ``dev-<timestamp>`` key; generated keys are refused elsewhere.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sagascope.common.config import ConfigError

log = logging.getLogger(__name__)

ALGORITHM = "RS256"
GENERATED_PREFIX = "dev-"
KEY_BITS = 2048
_KID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class RsaKey:
    kid: str
    public_key: rsa.RSAPublicKey
    private_key: rsa.RSAPrivateKey | None = field(default=None, repr=False)

    @property
    def generated(self) -> bool:
        return self.kid.startswith(GENERATED_PREFIX)

    def jwk(self) -> dict[str, str]:
        numbers = self.public_key.public_numbers()
        return {
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": ALGORITHM,
            "n": _b64uint(numbers.n),
            "e": _b64uint(numbers.e),
        }


class KeyRing:
    """The published keys and the current signing key; :meth:`reload` picks up rotations."""

    def __init__(
        self, keys_dir: Path, *, signing_kid: str | None = None, allow_generate: bool = False
    ) -> None:
        self.keys_dir = keys_dir
        self._signing_kid_setting = signing_kid
        self._allow_generate = allow_generate
        self._keys: tuple[RsaKey, ...] = ()
        self._signing: RsaKey | None = None
        self._jwks_json = ""

    def reload(self) -> None:
        """(Re)read the directory; on any problem the previous keys stay in use and the error propagates."""
        keys = load_keys(self.keys_dir)
        if not keys:
            if not self._allow_generate:
                raise ConfigError(
                    f"IDENTITY_KEYS_DIR {self.keys_dir} holds no <kid>.pem keys; provision an RSA key "
                    "(keys are only generated in development)"
                )
            keys = [generate_key(self.keys_dir)]
            log.warning("generated development signing key %s in %s", keys[0].kid, self.keys_dir)
        if not self._allow_generate:
            generated = [k.kid for k in keys if k.generated]
            if generated:
                raise ConfigError(
                    f"IDENTITY_KEYS_DIR {self.keys_dir} holds generated development keys {generated}; "
                    "they are refused outside development"
                )
        signing = _choose_signing(keys, self._signing_kid_setting)
        self._keys = tuple(keys)
        self._signing = signing
        self._jwks_json = json.dumps({"keys": [k.jwk() for k in self._keys]}, separators=(",", ":"))
        log.info("key ring loaded: kids %s, signing with %s", [k.kid for k in keys], signing.kid)

    @property
    def keys(self) -> tuple[RsaKey, ...]:
        return self._keys

    @property
    def signing_key(self) -> RsaKey:
        if self._signing is None:
            raise RuntimeError("KeyRing.reload() has not been called")
        return self._signing

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.jwk() for k in self._keys]}

    def jwks_json(self) -> str:
        """The JWKS document; the gRPC GetJwks and the HTTP endpoint serve this exact string."""
        return self._jwks_json


def load_keys(keys_dir: Path) -> list[RsaKey]:
    if not keys_dir.is_dir():
        return []
    keys = []
    for path in sorted(keys_dir.glob("*.pem")):
        kid = path.stem
        if not _KID.fullmatch(kid):
            raise ConfigError(f"IDENTITY_KEYS_DIR: {path.name!r} is not a valid kid ([A-Za-z0-9._-])")
        keys.append(_load_pem(kid, path.read_bytes(), path))
    return keys


def generate_key(keys_dir: Path, kid: str | None = None) -> RsaKey:
    """Create a private key, persist it as ``<kid>.pem`` (mode 0600) and return it."""
    kid = kid or f"{GENERATED_PREFIX}{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(2)}"
    if not _KID.fullmatch(kid):
        raise ValueError(f"invalid kid {kid!r}")
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = keys_dir / f"{kid}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return RsaKey(kid=kid, public_key=private_key.public_key(), private_key=private_key)


def _load_pem(kid: str, pem: bytes, path: Path) -> RsaKey:
    if b"PRIVATE KEY" in pem:
        private = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private, rsa.RSAPrivateKey):
            raise ConfigError(f"IDENTITY_KEYS_DIR: {path.name} is not an RSA private key")
        return RsaKey(kid=kid, public_key=private.public_key(), private_key=private)
    public = serialization.load_pem_public_key(pem)
    if not isinstance(public, rsa.RSAPublicKey):
        raise ConfigError(f"IDENTITY_KEYS_DIR: {path.name} is not an RSA public key")
    return RsaKey(kid=kid, public_key=public)


def _choose_signing(keys: Sequence[RsaKey], wanted: str | None) -> RsaKey:
    signers = [k for k in keys if k.private_key is not None]
    if wanted:
        for key in signers:
            if key.kid == wanted:
                return key
        raise ConfigError(f"IDENTITY_SIGNING_KID {wanted!r} names no private key in IDENTITY_KEYS_DIR")
    if not signers:
        raise ConfigError("IDENTITY_KEYS_DIR holds only public keys; at least one private key must sign")
    return max(signers, key=lambda k: k.kid)


def _b64uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
