"""``python -m sagascope.common.health_probe HOST:PORT [--tls-ca-file ... --tls-cert-file ... --tls-key-file ...]``

A container health check: exit 0 when ``grpc.health.v1.Health/Check`` answers SERVING.
The TLS flags follow grpc-health-probe's (``-tls-ca-cert``, ``-tls-client-cert``,
``-tls-client-key``): a CA makes the probe use TLS, a certificate and key are presented
to a server that requires mutual TLS.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc

from sagascope.common.tls import TlsSettings, open_channel


async def probe(target: str, tls: TlsSettings, timeout: float) -> bool:
    """Whether the whole server answers SERVING; an RPC failure raises (the callers decide)."""
    async with open_channel(target, tls) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="health_probe", description=__doc__)
    parser.add_argument("target")
    parser.add_argument("--tls-ca-file", type=Path)
    parser.add_argument("--tls-cert-file", type=Path)
    parser.add_argument("--tls-key-file", type=Path)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    tls = TlsSettings(args.tls_cert_file, args.tls_key_file, args.tls_ca_file)
    try:
        serving = asyncio.run(probe(args.target, tls, args.timeout))
    except Exception as exc:  # any failure is "unhealthy"; say why for `docker inspect`
        print(f"{args.target}: not serving ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
    if not serving:
        print(f"{args.target}: NOT_SERVING", file=sys.stderr)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
