"""Domain errors that carry their gRPC status code.

Servicers and domain code raise these; one server interceptor
(:mod:`sagascope.common.server`) turns them into a status and a message a person
understands, so no servicer needs ``context.abort`` boilerplate. An error may also
carry machine-readable ``google.rpc`` details (:meth:`ServiceError.status_details`):
a bad field becomes a ``BadRequest`` field violation, a throttled call a ``RetryInfo``,
sent in the standard ``grpc-status-details-bin`` trailer, written by grpcio-status.
"""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

RETRY_AFTER_KEY = "retry-after"


class ServiceError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def status_details(self) -> list[Message]:
        """``google.rpc`` detail messages for the status (none by default)."""
        return []

    def extra_trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        """Plain trailing metadata a client without grpcio-status can read."""
        return ()

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        """Everything the status carries besides code and message, ready for ``context.abort``."""
        details = self.status_details()
        metadata: list[tuple[str, str | bytes]] = list(self.extra_trailing_metadata())
        if details:
            metadata.extend(rpc_status.to_status(rich_status(self.code, self.message, details)).trailing_metadata)
        return tuple(metadata)


def rich_status(code: grpc.StatusCode, message: str, details: list[Message]) -> status_pb2.Status:
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    return status_pb2.Status(code=code.value[0], message=message, details=packed)


def bad_request(field: str, description: str) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field=field, description=description)]
    )


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def status_details(self) -> list[Message]:
        return [bad_request(self.field, self.problem)]


class ResourceExhausted(ServiceError):
    """Throttled: try again after ``retry_after_seconds`` (a ``RetryInfo`` detail and a ``retry-after`` trailer)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = max(1, math.ceil(retry_after_seconds))

    def status_details(self) -> list[Message]:
        return [error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=self.retry_after_seconds))]

    def extra_trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((RETRY_AFTER_KEY, str(self.retry_after_seconds)),)


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
