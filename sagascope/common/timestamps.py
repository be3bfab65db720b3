"""datetime <-> google.protobuf.Timestamp, for the servicers' message mapping."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp


def to_timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def epoch_timestamp(seconds: float) -> Timestamp | None:
    """Epoch seconds as a Timestamp; None for 0 (never), so the field stays unset."""
    if seconds <= 0:
        return None
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp
