"""Identity service settings, read once from the environment by :meth:`IdentitySettings.from_env`.

| variable | default | meaning |
|---|---|---|
| `IDENTITY_HOST` | `127.0.0.1` | listen address of the gRPC and HTTP servers |
| `IDENTITY_GRPC_PORT` | `50051` | gRPC: IdentityService, health, reflection |
| `IDENTITY_HTTP_PORT` | `8081` | HTTP: `/auth/login`, `/.well-known/jwks.json`, `/healthz` |
| `IDENTITY_METRICS_PORT` | `9101` | Prometheus `/metrics` |
| `IDENTITY_USERS_FILE` | packaged `demo_users.json` | users, scrypt hashes and roles (1) |
| `IDENTITY_KEYS_DIR` | `var/identity/keys` | RSA keys, one `<kid>.pem` each (2) |
| `IDENTITY_SIGNING_KID` | kid that sorts last | the key that signs new tokens (3) |
| `IDENTITY_ISSUER` | `sagascope-identity` | the `iss` claim |
| `IDENTITY_AUDIENCE` | `sagascope` | the `aud` claim |
| `IDENTITY_TOKEN_TTL_SECONDS` | `900` | access token lifetime, 60..86400 |
| `IDENTITY_LOGIN_LIMIT_PER_USERNAME` | `5/minute` | login attempts per username until one succeeds (4) |
| `IDENTITY_LOGIN_LIMIT_PER_ADDRESS` | `60/minute` | login attempts per client address (4) |
| `IDENTITY_LOGIN_MAX_CONCURRENT_HASHES` | `4` | password checks (scrypt) running at once |
| `IDENTITY_LOGIN_HASH_WAIT_SECONDS` | `0.5` | how long a login waits for a hashing slot before RESOURCE_EXHAUSTED |
| `IDENTITY_TRUSTED_PROXIES` | empty | comma-separated IPs/CIDRs whose `X-Forwarded-For` names the client (5) |

1. The packaged demo file (``sagascope/identity/demo_users.json``) holds published
   passwords and is refused outside development.
2. Relative to the working directory. Every key in it is published in the
   JWKS. In development an empty directory gets a generated ``dev-*`` key;
   generated keys are refused outside development.
3. The other keys keep verifying while they rotate out; SIGHUP reloads the directory.
4. A ``limits`` rate string (``5/minute``, ``30 per 10 seconds``), a moving window in
   memory per process. Over it: gRPC RESOURCE_EXHAUSTED with a ``retry-after`` trailer
   and a ``RetryInfo`` detail, HTTP 429 with ``Retry-After``.
5. Without it the peer address is used and forwarded headers are ignored (a client
   could otherwise name any address it likes).

``SAGASCOPE_ENV`` (:func:`sagascope.common.config.deployment_environment`) is
``development`` by default; any other value refuses the development secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sagascope.common.config import ConfigError, deployment_environment, env_float, env_int, env_str
from sagascope.common.ports import IDENTITY, IDENTITY_HTTP
from sagascope.common.tls import TlsSettings
from sagascope.identity.throttle import ThrottleSettings

DEMO_USERS_FILE = Path(__file__).with_name("demo_users.json")
DEVELOPMENT = "development"


@dataclass(frozen=True)
class IdentitySettings:
    host: str = "127.0.0.1"
    grpc_port: int = IDENTITY.grpc.default
    http_port: int = IDENTITY_HTTP.default
    metrics_port: int = IDENTITY.metrics.default
    users_file: Path = DEMO_USERS_FILE
    keys_dir: Path = Path("var/identity/keys")
    signing_kid: str | None = None
    issuer: str = "sagascope-identity"
    audience: str = "sagascope"
    token_ttl_seconds: int = 900
    environment: str = DEVELOPMENT
    throttle: ThrottleSettings = field(default_factory=ThrottleSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)

    @property
    def is_development(self) -> bool:
        return self.environment == DEVELOPMENT

    @classmethod
    def from_env(cls) -> IdentitySettings:
        settings = cls(
            host=env_str("IDENTITY_HOST", "127.0.0.1"),
            grpc_port=IDENTITY.grpc.read(),
            http_port=IDENTITY_HTTP.read(),
            metrics_port=IDENTITY.metrics.read(),
            users_file=Path(env_str("IDENTITY_USERS_FILE", str(DEMO_USERS_FILE))),
            keys_dir=Path(env_str("IDENTITY_KEYS_DIR", "var/identity/keys")).absolute(),
            signing_kid=env_str("IDENTITY_SIGNING_KID", "") or None,
            issuer=env_str("IDENTITY_ISSUER", "sagascope-identity"),
            audience=env_str("IDENTITY_AUDIENCE", "sagascope"),
            token_ttl_seconds=env_int("IDENTITY_TOKEN_TTL_SECONDS", 900),
            environment=deployment_environment(),
            tls=TlsSettings.from_env("IDENTITY"),
            throttle=ThrottleSettings(
                per_username=env_str("IDENTITY_LOGIN_LIMIT_PER_USERNAME", ThrottleSettings.per_username),
                per_address=env_str("IDENTITY_LOGIN_LIMIT_PER_ADDRESS", ThrottleSettings.per_address),
                max_concurrent_hashes=env_int(
                    "IDENTITY_LOGIN_MAX_CONCURRENT_HASHES", ThrottleSettings.max_concurrent_hashes
                ),
                hash_wait_seconds=env_float("IDENTITY_LOGIN_HASH_WAIT_SECONDS", ThrottleSettings.hash_wait_seconds),
                trusted_proxies=tuple(
                    p.strip() for p in env_str("IDENTITY_TRUSTED_PROXIES", "").split(",") if p.strip()
                ),
            ),
        )
        try:
            settings.throttle.validate()
        except ValueError as exc:
            raise ConfigError(f"IDENTITY_LOGIN_* / IDENTITY_TRUSTED_PROXIES: {exc}") from None
        if not 60 <= settings.token_ttl_seconds <= 86400:
            raise ConfigError(
                f"IDENTITY_TOKEN_TTL_SECONDS must be between 60 and 86400, got {settings.token_ttl_seconds}"
            )
        if not settings.is_development and settings.users_file.resolve() == DEMO_USERS_FILE.resolve():
            raise ConfigError(
                f"IDENTITY_USERS_FILE must be set outside development "
                f"(SAGASCOPE_ENV={settings.environment}): "
                "the packaged demo users file holds published passwords"
            )
        return settings
