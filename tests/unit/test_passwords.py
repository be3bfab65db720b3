"""scrypt password hashes and the users store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sagascope.common.config import ConfigError
from sagascope.identity.passwords import PasswordHashError, ScryptHash, hash_password, verify_password
from sagascope.identity.settings import DEMO_USERS_FILE
from sagascope.identity.users import UserStore
from tests.support.identity import DEMO_PASSWORDS

FAST = {"n": 2**10, "r": 8, "p": 1}  # cheap parameters where the test is about the format, not the cost


def test_hash_verifies_the_right_password_only() -> None:
    encoded = hash_password("correct horse", **FAST)
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct horsE", encoded)
    assert not verify_password("", encoded)


def test_hash_is_salted_and_self_describing() -> None:
    first, second = hash_password("same", **FAST), hash_password("same", **FAST)
    assert first != second
    parsed = ScryptHash.parse(first)
    assert (parsed.n, parsed.r, parsed.p) == (2**10, 8, 1)
    assert len(parsed.salt) == 16 and len(parsed.key) == 32
    assert first.startswith("scrypt$1024$8$1$")


def test_default_parameters_are_strong() -> None:
    parsed = ScryptHash.parse(hash_password("pw"))
    assert parsed.n >= 2**14 and parsed.r >= 8


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "bcrypt$1$2$3$4$5",
        "scrypt$1000$8$1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
        "scrypt$x$8$1$a$b",
        "scrypt$16384$8$1",
    ],
)
def test_malformed_hashes_are_rejected(encoded: str) -> None:
    with pytest.raises(PasswordHashError):
        ScryptHash.parse(encoded)


def test_demo_users_have_the_documented_roles_and_passwords() -> None:
    store = UserStore.load(DEMO_USERS_FILE)
    assert store.demo is True
    expected_roles = {
        "alice": {"orders.read", "orders.write"},
        "bob": {"orders.read", "orders.write"},
        "viewer": {"orders.read"},
        "admin": {"orders.read", "orders.write", "orders.admin", "sagas.read", "sagas.operate"},
        "operator": {"sagas.read", "sagas.operate"},
        "order-service": {"payments.read", "payments.write"},
    }
    assert len(store) == len(expected_roles)
    for username, roles in expected_roles.items():
        user = store.authenticate(username, DEMO_PASSWORDS[username])
        assert user is not None, username
        assert user.roles == roles
        assert ScryptHash.parse(hash_password("x")).n == user.password_hash.n == 2**14


def test_unknown_user_and_wrong_password_look_the_same_and_both_cost_a_hash() -> None:
    store = UserStore.load(DEMO_USERS_FILE)
    calls: list[str] = []
    real_dummy = store._dummy

    class SpyHash:
        def matches(self, password: str) -> bool:
            calls.append(password)
            return real_dummy.matches(password)

    store._dummy = SpyHash()  # type: ignore[assignment]
    assert store.authenticate("alice", "wrong") is None
    assert calls == []
    assert store.authenticate("mallory", "wrong") is None
    assert calls == ["wrong"]  # the unknown user paid for a scrypt run against the dummy hash


def _write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "users.json"
    path.write_text(json.dumps(document))
    return path


def test_users_file_errors_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"IDENTITY_USERS_FILE .* does not exist"):
        UserStore.load(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match=r"users\[0\]\.password_hash"):
        UserStore.load(_write(tmp_path, {"users": [{"username": "a", "password_hash": "plain"}]}))
    duplicate = {"username": "a", "password_hash": hash_password("x", **FAST), "roles": []}
    with pytest.raises(ConfigError, match="duplicate usernames"):
        UserStore.load(_write(tmp_path, {"users": [duplicate, duplicate]}))


def test_hash_password_cli_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from sagascope.identity import hash_password as cli

    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    assert cli.main(["--stdin", "--n", "1024"]) == 0
    printed = capsys.readouterr().out.strip()
    assert verify_password("s3cret", printed)
    assert "s3cret" not in printed
