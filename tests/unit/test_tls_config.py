"""The mutual-TLS compose variant stays consistent with the plain one and with `sagascope certs`."""

from __future__ import annotations

from pathlib import Path

import yaml

from sagascope.common.dev_certs import make_development_pki

ROOT = Path(__file__).resolve().parents[2]


def test_kong_tls_config_is_kong_yml_with_tls_upstreams() -> None:
    plain = yaml.safe_load((ROOT / "gateway/kong/kong.yml").read_text())
    tls = yaml.safe_load((ROOT / "gateway/kong/kong-tls.yml").read_text())
    protocols = {s["name"]: s.pop("protocol") for s in tls["services"]}
    assert protocols == {"order-grpc": "grpcs", "identity-http": "https"}
    for service in plain["services"]:
        service.pop("protocol")
    assert tls == plain


def test_compose_tls_uses_the_files_sagascope_certs_makes(tmp_path: Path) -> None:
    made = {p.name for files in make_development_pki(tmp_path).values() for p in (files.cert, files.key)}
    compose = yaml.safe_load((ROOT / "docker-compose.tls.yaml").read_text())
    services = compose["services"]
    expected = (("identity", "IDENTITY", 50051), ("payment", "PAYMENT", 50053), ("order", "ORDER", 50052))
    for name, prefix, port in expected:
        env = services[name]["environment"]
        for kind in ("CERT", "KEY", "CA"):
            assert Path(env[f"{prefix}_TLS_{kind}_FILE"]).name in made
        probe = services[name]["healthcheck"]["test"]
        assert probe[:5] == ["CMD", "python", "-m", "sagascope.common.health_probe", f"127.0.0.1:{port}"]
        flags = dict(zip(probe[5::2], probe[6::2], strict=True))
        assert {Path(v).name for v in flags.values()} <= made
        assert set(flags) == {"--tls-ca-file", "--tls-cert-file", "--tls-key-file"}
    kong = services["kong"]["environment"]
    assert Path(kong["KONG_CLIENT_SSL_CERT"]).name in made and kong["KONG_DECLARATIVE_CONFIG"].endswith("kong-tls.yml")
    for name in ("payment", "order"):
        assert services[name]["environment"][f"{name.upper()}_JWKS_URL"].startswith("https://identity:")
