"""Transport security outside a mesh: optional TLS for every gRPC server and client, mutual TLS
between services — the one place certificates are read and credentials built.

Each process reads ``<PREFIX>_TLS_CERT_FILE``, ``<PREFIX>_TLS_KEY_FILE`` and
``<PREFIX>_TLS_CA_FILE`` (``IDENTITY``, ``ORDER``, ``PAYMENT``; ``SAGASCOPE`` for the CLI):

- server: a certificate and key turn TLS on; a CA as well requires every client to present a
  certificate signed by it (mutual TLS);
- client (the service's outgoing calls, the CLI): a CA turns TLS on and verifies the server
  against it; the certificate and key, when set, are presented as the client certificate.

Nothing set means plaintext, as before (a mesh, or a laptop). ``sagascope certs`` makes a
development CA and certificates that fit (``sagascope.common.dev_certs``).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from sagascope.common.config import ConfigError, env_str

CLIENT_PREFIX = "SAGASCOPE"  # the CLI, the demo and the local supervisor's health probes


@dataclass(frozen=True)
class TlsSettings:
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None

    @classmethod
    def from_env(cls, prefix: str) -> TlsSettings:
        """Read ``<prefix>_TLS_{CERT,KEY,CA}_FILE``; a half-set pair or a missing file is a ConfigError."""

        def path(name: str) -> Path | None:
            value = env_str(f"{prefix}_TLS_{name}_FILE", "")
            if not value:
                return None
            if not Path(value).is_file():
                raise ConfigError(f"{prefix}_TLS_{name}_FILE: {value} is not a readable file")
            return Path(value)

        settings = cls(cert_file=path("CERT"), key_file=path("KEY"), ca_file=path("CA"))
        if (settings.cert_file is None) != (settings.key_file is None):
            raise ConfigError(f"{prefix}_TLS_CERT_FILE and {prefix}_TLS_KEY_FILE must be set together")
        return settings

    @property
    def serves_tls(self) -> bool:
        return self.cert_file is not None and self.key_file is not None

    @property
    def requires_client_certificates(self) -> bool:
        return self.serves_tls and self.ca_file is not None

    @property
    def calls_with_tls(self) -> bool:
        return self.ca_file is not None

    def describe(self) -> str:
        if self.requires_client_certificates:
            return "mutual TLS"
        return "TLS" if self.serves_tls else "plaintext"


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials | None:
    """Credentials for ``add_secure_port``, or None for plaintext."""
    if not tls.serves_tls:
        return None
    key, cert = _read(tls.key_file), _read(tls.cert_file)
    assert key is not None and cert is not None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=_read(tls.ca_file), require_client_auth=tls.requires_client_certificates
    )


def channel_credentials(tls: TlsSettings | None) -> grpc.ChannelCredentials | None:
    """Credentials for an outgoing channel, or None for plaintext."""
    if tls is None or not tls.calls_with_tls:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca_file), private_key=_read(tls.key_file), certificate_chain=_read(tls.cert_file)
    )


def open_channel(
    target: str,
    tls: TlsSettings | None = None,
    *,
    interceptors: Sequence[Any] | None = None,
    options: Sequence[tuple[str, Any]] | None = None,
) -> grpc.aio.Channel:
    """The channel factory: TLS (and a client certificate) when ``tls`` says so, plaintext otherwise."""
    credentials = channel_credentials(tls)
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)


def server_ssl_context(tls: TlsSettings) -> ssl.SSLContext | None:
    """For an HTTPS listener (identity's /auth/login and JWKS): TLS only — browsers and scripts log in
    there without client certificates; mutual TLS is for the gRPC ports."""
    if not tls.serves_tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context


def client_ssl_context(tls: TlsSettings | None) -> ssl.SSLContext | None:
    """For an HTTPS client (the JWKS fetch): verify against the CA, present the certificate if any."""
    if tls is None or not tls.calls_with_tls:
        return None
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context
