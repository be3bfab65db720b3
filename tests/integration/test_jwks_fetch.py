"""JwksCache's HTTP fetch (the standard library's urllib in a worker thread) against a real HTTP
server on loopback: the keys arrive, and every way a JWKS endpoint can fail ends in a clear
UNAVAILABLE instead of a hang or a crash."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from sagascope.common.auth import JwksCache
from sagascope.common.errors import Unavailable
from sagascope.identity.keys import KeyRing
from tests.support.http_server import serving


class _Endpoint(BaseHTTPRequestHandler):
    # path -> (status, body, seconds to wait before answering)
    routes: dict[str, tuple[int, bytes, float]] = {}
    seen_accept: list[str] = []

    def do_GET(self) -> None:
        status, body, delay = self.routes.get(self.path, (404, b"not found", 0.0))
        self.seen_accept.append(self.headers.get("Accept", ""))
        if delay:
            threading.Event().wait(delay)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def endpoint() -> Iterator[str]:
    with serving(_Endpoint) as url:
        yield url


async def test_keys_are_fetched_without_the_environments_proxy(
    endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ring = KeyRing(tmp_path, allow_generate=True)
    ring.reload()
    _Endpoint.routes = {"/jwks.json": (200, ring.jwks_json().encode(), 0.0)}
    # A proxy that does not exist: a fetch that used it would fail.
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    cache = JwksCache(f"{endpoint}/jwks.json")
    kid = ring.jwks()["keys"][0]["kid"]
    key = await cache.get_key(kid)
    assert key.key_id == kid and key.algorithm_name == "RS256"
    assert cache.fetch_count == 1 and _Endpoint.seen_accept[-1] == "application/json"


@pytest.mark.parametrize(
    ("route", "answer"),
    [
        ("server error", (500, b'{"error": "boom"}', 0.0)),
        ("not JSON", (200, b"<html>login</html>", 0.0)),
        ("no RSA keys", (200, b'{"keys": [{"kty": "EC", "kid": "x"}]}', 0.0)),
        ("larger than a JWKS", (200, b" " * ((1 << 20) + 10), 0.0)),
        ("slower than the timeout", (200, b'{"keys": []}', 3.0)),
    ],
)
async def test_a_broken_endpoint_is_unavailable_not_a_hang(
    endpoint: str, route: str, answer: tuple[int, bytes, float]
) -> None:
    _Endpoint.routes = {"/jwks.json": answer}
    cache = JwksCache(f"{endpoint}/jwks.json", timeout_seconds=1.0)
    with pytest.raises(Unavailable, match="signing keys"):
        await cache.get_key("any")


async def test_nothing_listening_is_unavailable() -> None:
    cache = JwksCache("http://127.0.0.1:9/jwks.json", timeout_seconds=1.0)
    with pytest.raises(Unavailable, match="cannot fetch"):
        await cache.get_key("any")
