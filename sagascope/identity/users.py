"""Users and their roles, loaded from the JSON users file (``IDENTITY_USERS_FILE``).

The file is ``{"users": [{"username", "password_hash", "roles"}, ...]}``; extra
keys (``comment``, a top-level ``_comment``) are ignored. A top-level
``"demo": true`` marks a file of published development passwords, which is
refused outside development. Make hashes with ``python -m sagascope.identity.hash_password``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sagascope.common.config import ConfigError
from sagascope.identity.passwords import PasswordHashError, ScryptHash, hash_password


@dataclass(frozen=True)
class User:
    username: str
    roles: frozenset[str]
    password_hash: ScryptHash = field(repr=False)


class UserStore:
    def __init__(self, users: Iterable[User], *, demo: bool = False) -> None:
        self._users = {u.username: u for u in users}
        self.demo = demo
        # Unknown users are checked against this, so they cost the same scrypt work as a wrong password.
        self._dummy = ScryptHash.parse(hash_password(secrets.token_urlsafe(16)))

    def __len__(self) -> int:
        return len(self._users)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password matches, else None; CPU-bound (scrypt), run it off the event loop."""
        user = self._users.get(username)
        if user is None:
            self._dummy.matches(password)
            return None
        return user if user.password_hash.matches(password) else None

    @classmethod
    def load(cls, path: Path) -> UserStore:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"IDENTITY_USERS_FILE {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"IDENTITY_USERS_FILE {path} is not readable JSON: {exc}") from None
        entries = document.get("users") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ConfigError(f'IDENTITY_USERS_FILE {path}: expected {{"users": [...]}}')
        users = []
        for index, entry in enumerate(entries):
            users.append(_parse_user(entry, f"IDENTITY_USERS_FILE {path}: users[{index}]"))
        names = [u.username for u in users]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"IDENTITY_USERS_FILE {path}: duplicate usernames {duplicates}")
        return cls(users, demo=document.get("demo") is True)


def _parse_user(entry: object, where: str) -> User:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be an object")
    username, encoded, roles = entry.get("username"), entry.get("password_hash"), entry.get("roles", [])
    if not isinstance(username, str) or not username:
        raise ConfigError(f"{where}.username must be a non-empty string")
    if not isinstance(encoded, str):
        raise ConfigError(f"{where}.password_hash must be a string (see sagascope.identity.hash_password)")
    if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
        raise ConfigError(f"{where}.roles must be a list of role names")
    try:
        password_hash = ScryptHash.parse(encoded)
    except PasswordHashError as exc:
        raise ConfigError(f"{where}.password_hash: {exc}") from None
    return User(username=username, roles=frozenset(roles), password_hash=password_hash)
