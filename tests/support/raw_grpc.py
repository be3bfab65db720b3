"""Calls with raw request bytes and readers for the ``google.rpc`` details of a refusal."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


async def call_raw(
    channel: grpc.aio.Channel,
    method: str,
    payload: bytes,
    metadata: tuple[tuple[str, str], ...] = (),
    timeout: float = 10.0,
) -> bytes:
    """Send ``payload`` as the request message of ``method`` (``/pkg.Service/Method``), unparsed."""
    reply: bytes = await channel.unary_unary(method)(payload, metadata=metadata, timeout=timeout)
    return reply


def field_violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """The (field, description) pairs of the ``BadRequest`` detail of a refusal, if any."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    found: list[tuple[str, str]] = []
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend((v.field, v.description) for v in bad.field_violations)
    return found


def retry_delay_seconds(error: grpc.aio.AioRpcError) -> int | None:
    """The ``RetryInfo`` delay of a refusal, if it carries one."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return int(info.retry_delay.seconds)
    return None
