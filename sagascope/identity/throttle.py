"""Login throttling: failed attempts per username, attempts per client address, and a bound on
concurrent password hashing — so guessing is slow and logins cannot starve the service.

Windows are moving windows from the ``limits`` library (in memory, per process); a
refused attempt raises :class:`ResourceExhausted` with the seconds until the window
frees a slot, which the front doors send as ``retry-after`` (gRPC trailer and
``RetryInfo`` detail) or ``Retry-After`` (HTTP 429). Every refusal is counted in
``identity_login_throttled_total{reason}`` and logged once as ``identity.login.throttled``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from sagascope.common.errors import ResourceExhausted
from sagascope.common.telemetry.metrics import LoginMetrics

log = logging.getLogger(__name__)

REASON_USERNAME = "username"
REASON_ADDRESS = "address"
REASON_CONCURRENCY = "concurrency"
UNKNOWN_ADDRESS = "unknown"


@dataclass(frozen=True)
class ThrottleSettings:
    """``limits`` rate strings ("5/minute", "30 per 10 seconds"); see the identity settings table."""

    per_username: str = "5/minute"
    per_address: str = "60/minute"
    max_concurrent_hashes: int = 4
    hash_wait_seconds: float = 0.5
    trusted_proxies: tuple[str, ...] = ()

    def validate(self) -> None:
        """Raise ValueError naming the bad value (the settings loader turns it into a ConfigError)."""
        parse(self.per_username)
        parse(self.per_address)
        if self.max_concurrent_hashes < 1:
            raise ValueError(f"max concurrent hashes must be at least 1, got {self.max_concurrent_hashes}")
        if self.hash_wait_seconds < 0:
            raise ValueError(f"hash wait must not be negative, got {self.hash_wait_seconds}")
        for proxy in self.trusted_proxies:
            ipaddress.ip_network(proxy, strict=False)


class LoginThrottle:
    def __init__(self, settings: ThrottleSettings, metrics: LoginMetrics) -> None:
        settings.validate()
        self._per_username: RateLimitItem = parse(settings.per_username)
        self._per_address: RateLimitItem = parse(settings.per_address)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._hashing = asyncio.Semaphore(settings.max_concurrent_hashes)
        self._hash_wait = settings.hash_wait_seconds
        self._trusted_proxies = settings.trusted_proxies
        self._metrics = metrics

    def client_address(self, peer: str | None, forwarded_for: str | None) -> str:
        return client_address(peer, forwarded_for, self._trusted_proxies)

    def admit(self, username: str, address: str) -> None:
        """Count an attempt for ``username`` and from ``address``; refuse it if either is over its limit.

        Attempts are counted before the password is checked, so concurrent guesses cannot all slip
        through before the first one fails; a successful login clears its username's count."""
        if not self._limiter.hit(self._per_username, REASON_USERNAME, username):
            self._refuse(REASON_USERNAME, username, address, self._retry_after(self._per_username, username))
        if not self._limiter.hit(self._per_address, REASON_ADDRESS, address):
            self._refuse(REASON_ADDRESS, username, address, self._retry_after(self._per_address, address))

    def succeeded(self, username: str) -> None:
        self._limiter.clear(self._per_username, REASON_USERNAME, username)

    @asynccontextmanager
    async def hashing_slot(self, username: str, address: str) -> AsyncIterator[None]:
        """One of the bounded password-hashing slots; waits briefly, then refuses instead of queueing."""
        if self._hashing.locked():
            try:
                await asyncio.wait_for(self._hashing.acquire(), self._hash_wait)
            except TimeoutError:
                self._refuse(REASON_CONCURRENCY, username, address, 1.0)
        else:
            await self._hashing.acquire()
        try:
            yield
        finally:
            self._hashing.release()

    def _retry_after(self, item: RateLimitItem, key: str) -> float:
        kind = REASON_USERNAME if item is self._per_username else REASON_ADDRESS
        reset_at = self._limiter.get_window_stats(item, kind, key).reset_time
        return max(1.0, reset_at - time.time())

    def _refuse(self, reason: str, username: str, address: str, retry_after: float) -> None:
        error = ResourceExhausted(f"too many login attempts; retry in {_seconds(retry_after)} s", retry_after)
        self._metrics.throttled.labels(reason).inc()
        log.warning(
            "login throttled (%s) for %r from %s; retry after %d s",
            reason,
            username,
            address,
            error.retry_after_seconds,
            extra={
                "event": "identity.login.throttled",
                "reason": reason,
                "username": username,
                "client.address": address,
                "retry_after_s": error.retry_after_seconds,
            },
        )
        raise error


def _seconds(value: float) -> int:
    return ResourceExhausted("", value).retry_after_seconds


def client_address(peer: str | None, forwarded_for: str | None, trusted_proxies: Sequence[str]) -> str:
    """The address to throttle: the peer, or — only when the peer is a trusted proxy — the last
    ``X-Forwarded-For`` hop that is not itself a trusted proxy (earlier hops are the client's to forge)."""
    address = peer or UNKNOWN_ADDRESS
    if not forwarded_for or not _is_trusted(address, trusted_proxies):
        return address
    for hop in reversed([part.strip() for part in forwarded_for.split(",")]):
        if not _parse_ip(hop):
            return address  # a malformed chain: fall back to what we can see
        if not _is_trusted(hop, trusted_proxies):
            return hop
    return address


def grpc_peer_address(peer: str | None) -> str | None:
    """``ipv4:10.0.0.1:5000`` / ``ipv6:[::1]:5000`` (grpc's peer(), which percent-encodes the
    brackets: ``ipv6:%5B::1%5D:5000``) -> the bare IP, or None."""
    if not peer:
        return None
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return urllib.parse.unquote(rest).rsplit(":", 1)[0].strip("[]")
    return kind  # unix sockets and the like: one bucket per kind


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _is_trusted(address: str, trusted_proxies: Sequence[str]) -> bool:
    ip = _parse_ip(address)
    return ip is not None and any(ip in ipaddress.ip_network(net, strict=False) for net in trusted_proxies)
