"""Health checks for the cluster's components, in the supervisor's HealthCheck shape."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from sagascope.local.supervisor import HealthCheck
from tools.k8s_cluster.pki import Pki


def _get(url: str, context: ssl.SSLContext | None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3, context=context) as reply:
            return 200 <= int(reply.status) < 300
    except (OSError, urllib.error.URLError):
        return False


def https_health(url: str, pki: Pki | None = None) -> HealthCheck:
    """A 2xx over TLS: verified and as the admin when ``pki`` is given (the API server); else the
    component's own self-signed certificate on loopback, whose /healthz needs no credentials."""
    if pki is not None:
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return lambda: asyncio.to_thread(_get, url, context)


def containerd_health(socket: Path) -> HealthCheck:
    """containerd answers its API on ``socket`` (`ctr version` reports the server's version)."""

    def check() -> bool:
        if not socket.exists():
            return False
        proc = subprocess.run(["ctr", "--address", str(socket), "version"], capture_output=True, text=True)
        return proc.returncode == 0 and "Server:" in proc.stdout

    return lambda: asyncio.to_thread(check)


def iptables_chain(table: str, chain: str) -> HealthCheck:
    """A component that listens nowhere (kube-router, firewall only) is up once its chain exists."""

    def check() -> bool:
        return subprocess.run(["iptables", "-t", table, "-n", "-L", chain], capture_output=True).returncode == 0

    return lambda: asyncio.to_thread(check)
