"""IdentitySettings.from_env: defaults, overrides, and the development-only guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from sagascope.common.auth import AuthSettings
from sagascope.common.config import ConfigError
from sagascope.identity.settings import DEMO_USERS_FILE, IdentitySettings

_VARS = [
    "SAGASCOPE_ENV",
    "IDENTITY_HOST",
    "IDENTITY_GRPC_PORT",
    "IDENTITY_HTTP_PORT",
    "IDENTITY_METRICS_PORT",
    "IDENTITY_USERS_FILE",
    "IDENTITY_KEYS_DIR",
    "IDENTITY_SIGNING_KID",
    "IDENTITY_ISSUER",
    "IDENTITY_AUDIENCE",
    "IDENTITY_TOKEN_TTL_SECONDS",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARS:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = IdentitySettings.from_env()
    assert (settings.host, settings.grpc_port, settings.http_port, settings.metrics_port) == (
        "127.0.0.1",
        50051,
        8081,
        9101,
    )
    assert settings.users_file == DEMO_USERS_FILE and DEMO_USERS_FILE.is_file()
    assert settings.keys_dir == Path.cwd() / "var/identity/keys"
    assert (settings.issuer, settings.audience, settings.token_ttl_seconds) == (
        "sagascope-identity",
        "sagascope",
        900,
    )
    assert settings.is_development


def test_overrides_and_bad_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IDENTITY_GRPC_PORT", "6000")
    monkeypatch.setenv("IDENTITY_KEYS_DIR", str(tmp_path))
    monkeypatch.setenv("IDENTITY_TOKEN_TTL_SECONDS", "120")
    settings = IdentitySettings.from_env()
    assert (settings.grpc_port, settings.keys_dir, settings.token_ttl_seconds) == (6000, tmp_path, 120)
    monkeypatch.setenv("IDENTITY_HTTP_PORT", "http")
    with pytest.raises(ConfigError, match="IDENTITY_HTTP_PORT"):
        IdentitySettings.from_env()
    monkeypatch.setenv("IDENTITY_HTTP_PORT", "8081")
    monkeypatch.setenv("IDENTITY_TOKEN_TTL_SECONDS", "5")
    with pytest.raises(ConfigError, match="IDENTITY_TOKEN_TTL_SECONDS"):
        IdentitySettings.from_env()


def test_demo_users_refused_outside_development(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAGASCOPE_ENV", "production")
    with pytest.raises(ConfigError, match="IDENTITY_USERS_FILE"):
        IdentitySettings.from_env()
    monkeypatch.setenv("IDENTITY_USERS_FILE", str(tmp_path / "users.json"))
    assert not IdentitySettings.from_env().is_development


def test_auth_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AuthSettings.from_env("PAYMENT") == AuthSettings()
    monkeypatch.setenv("PAYMENT_JWKS_URL", "http://identity:8081/.well-known/jwks.json")
    monkeypatch.setenv("PAYMENT_JWT_AUDIENCE", "payments")
    settings = AuthSettings.from_env("PAYMENT")
    assert settings.jwks_url == "http://identity:8081/.well-known/jwks.json"
    assert (settings.issuer, settings.audience) == ("sagascope-identity", "payments")
    assert AuthSettings.from_env("ORDER") == AuthSettings()
