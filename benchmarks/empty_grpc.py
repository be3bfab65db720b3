"""The floor of `make bench`: a grpcio aio server with one empty unary method, nothing else.

    .venv/bin/python -m benchmarks.empty_grpc        # prints "port <n>", serves until SIGTERM

No telemetry, no interceptors, no database, no health service: bytes in, empty bytes out. It
runs on the services' own runtime (sagascope.common.runtime: uvloop, the tuned garbage
collector), so what a service spends above it is the service's work, not the runtime's. The
bench drives it from its load client like the real calls (one channel, the same calls in flight)
and reads both processes' CPU: the least any gRPC hop can cost on this machine.
"""

from __future__ import annotations

import asyncio
import signal

import grpc

from sagascope.common.runtime import run

SERVICE = "sagascope.bench.v1.Empty"
METHOD = f"/{SERVICE}/Call"


async def _empty(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b""


async def serve() -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Call": grpc.unary_unary_rpc_method_handler(_empty)}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"port {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(grace=1)


if __name__ == "__main__":
    run(serve())
