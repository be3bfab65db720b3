"""Salted scrypt password hashes, encoded as one self-describing string.

Format: ``scrypt$<n>$<r>$<p>$<salt, base64url>$<derived key, base64url>``. The
cost parameters travel with the hash, so they can be raised later without
invalidating the hashes already in a users file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

SCHEME = "scrypt"
DEFAULT_N = 2**14
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
# scrypt needs 128 * n * r bytes; allow headroom above the default (16 MiB) for stronger hashes.
_MAX_MEMORY = 256 * 1024 * 1024


class PasswordHashError(ValueError):
    """A stored hash is not in the expected format."""


@dataclass(frozen=True)
class ScryptHash:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    @classmethod
    def parse(cls, encoded: str) -> ScryptHash:
        parts = encoded.split("$")
        if len(parts) != 6 or parts[0] != SCHEME:
            raise PasswordHashError("expected scrypt$<n>$<r>$<p>$<salt>$<key>")
        try:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            salt, key = _b64decode(parts[4]), _b64decode(parts[5])
        except ValueError:
            raise PasswordHashError("scrypt parameters or base64 fields are malformed") from None
        if n < 2 or n & (n - 1) or r < 1 or p < 1 or len(salt) < 8 or len(key) < 16:
            raise PasswordHashError("scrypt parameters are out of range")
        return cls(n=n, r=r, p=p, salt=salt, key=key)

    def encode(self) -> str:
        return "$".join([SCHEME, str(self.n), str(self.r), str(self.p), _b64(self.salt), _b64(self.key)])

    def matches(self, password: str) -> bool:
        candidate = _derive(password, self.salt, self.n, self.r, self.p, len(self.key))
        return hmac.compare_digest(candidate, self.key)


def hash_password(password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> str:
    salt = os.urandom(SALT_BYTES)
    return ScryptHash(n=n, r=r, p=p, salt=salt, key=_derive(password, salt, n, r, p, KEY_BYTES)).encode()


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches; the comparison is constant-time."""
    return ScryptHash.parse(encoded).matches(password)


def _derive(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAX_MEMORY, dklen=length
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
