"""The supervisor's pre-flight port check: a taken port is named before gRPC's bare bind error."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from sagascope.local.supervisor import PortInUseError, free_port, port_bindable, wait_until_bindable


@pytest.fixture
def outgoing_connection() -> Iterator[int]:
    """A live client connection whose local port is fixed, as the kernel's ephemeral pick would be."""
    with socket.socket() as listener, socket.socket() as client:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client.connect(listener.getsockname())  # the kernel picks the local port, from its ephemeral range
        accepted, _ = listener.accept()
        with accepted:
            yield int(client.getsockname()[1])


def test_a_port_held_by_an_outgoing_connection_is_not_bindable_for_a_grpc_server_either(
    outgoing_connection: int,
) -> None:
    assert not port_bindable(outgoing_connection)
    server = grpc.server(thread_pool=None, options=[("grpc.so_reuseport", 0)])  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="Failed to bind"):
        server.add_insecure_port(f"127.0.0.1:{outgoing_connection}")


async def test_a_taken_port_is_named_with_its_variable_and_the_remedy(outgoing_connection: int) -> None:
    started = time.monotonic()
    with pytest.raises(PortInUseError) as caught:
        await wait_until_bindable("order", {"ORDER_GRPC_PORT": outgoing_connection}, timeout=0.5)
    message = str(caught.value)
    assert f"127.0.0.1:{outgoing_connection} (ORDER_GRPC_PORT) is already in use" in message
    assert "ephemeral range" in message and "ip_local_reserved_ports" in message
    assert time.monotonic() - started >= 0.5  # it waited for a closing connection first


def test_free_ports_lie_outside_the_kernels_ephemeral_range_and_are_not_handed_out_twice() -> None:
    low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert not [p for p in ports if low <= p <= high]  # an outgoing connection can never take them


async def test_free_ports_pass_at_once() -> None:
    port = free_port()
    assert port_bindable(port)
    started = time.monotonic()
    await wait_until_bindable("order", {"ORDER_GRPC_PORT": port}, timeout=5)
    assert time.monotonic() - started < 1


async def test_a_port_freed_while_waiting_is_taken() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        assert not port_bindable(port)
        asyncio.get_running_loop().call_later(0.3, listener.close)
        started = time.monotonic()
        await wait_until_bindable("payment", {"PAYMENT_GRPC_PORT": port}, timeout=5)
        assert 0.3 <= time.monotonic() - started < 5
