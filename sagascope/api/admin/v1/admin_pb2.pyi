import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SagaStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAGA_STATUS_UNSPECIFIED: _ClassVar[SagaStatus]
    SAGA_STATUS_RUNNING: _ClassVar[SagaStatus]
    SAGA_STATUS_COMPENSATING: _ClassVar[SagaStatus]
    SAGA_STATUS_FAILED: _ClassVar[SagaStatus]
    SAGA_STATUS_PAUSED: _ClassVar[SagaStatus]
    SAGA_STATUS_COMPLETED: _ClassVar[SagaStatus]
    SAGA_STATUS_COMPENSATED: _ClassVar[SagaStatus]

class SagaOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAGA_ORDER_UNSPECIFIED: _ClassVar[SagaOrder]
    SAGA_ORDER_NEWEST: _ClassVar[SagaOrder]
    SAGA_ORDER_STALEST: _ClassVar[SagaOrder]

class StepKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_KIND_UNSPECIFIED: _ClassVar[StepKind]
    STEP_KIND_ACTION: _ClassVar[StepKind]
    STEP_KIND_COMPENSATION: _ClassVar[StepKind]
SAGA_STATUS_UNSPECIFIED: SagaStatus
SAGA_STATUS_RUNNING: SagaStatus
SAGA_STATUS_COMPENSATING: SagaStatus
SAGA_STATUS_FAILED: SagaStatus
SAGA_STATUS_PAUSED: SagaStatus
SAGA_STATUS_COMPLETED: SagaStatus
SAGA_STATUS_COMPENSATED: SagaStatus
SAGA_ORDER_UNSPECIFIED: SagaOrder
SAGA_ORDER_NEWEST: SagaOrder
SAGA_ORDER_STALEST: SagaOrder
STEP_KIND_UNSPECIFIED: StepKind
STEP_KIND_ACTION: StepKind
STEP_KIND_COMPENSATION: StepKind

class SagaFilter(_message.Message):
    __slots__ = ("status", "saga_name", "step", "older_than")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SAGA_NAME_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    OLDER_THAN_FIELD_NUMBER: _ClassVar[int]
    status: SagaStatus
    saga_name: str
    step: str
    older_than: _duration_pb2.Duration
    def __init__(self, status: _Optional[_Union[SagaStatus, str]] = ..., saga_name: _Optional[str] = ..., step: _Optional[str] = ..., older_than: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SagaSummary(_message.Message):
    __slots__ = ("saga_id", "saga_name", "status", "step", "order_id", "correlation_id", "created_at", "updated_at", "attempts", "failure_reason", "failure_kind", "lease_owner", "lease_expires_at", "next_attempt_at", "paused_from", "resolution")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    SAGA_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    FAILURE_KIND_FIELD_NUMBER: _ClassVar[int]
    LEASE_OWNER_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FROM_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    saga_name: str
    status: SagaStatus
    step: str
    order_id: str
    correlation_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    attempts: int
    failure_reason: str
    failure_kind: str
    lease_owner: str
    lease_expires_at: _timestamp_pb2.Timestamp
    next_attempt_at: _timestamp_pb2.Timestamp
    paused_from: SagaStatus
    resolution: str
    def __init__(self, saga_id: _Optional[str] = ..., saga_name: _Optional[str] = ..., status: _Optional[_Union[SagaStatus, str]] = ..., step: _Optional[str] = ..., order_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[int] = ..., failure_reason: _Optional[str] = ..., failure_kind: _Optional[str] = ..., lease_owner: _Optional[str] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., paused_from: _Optional[_Union[SagaStatus, str]] = ..., resolution: _Optional[str] = ...) -> None: ...

class StepRun(_message.Message):
    __slots__ = ("step", "index", "kind", "attempt", "started_at", "ended_at", "result", "reason")
    STEP_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    step: str
    index: int
    kind: StepKind
    attempt: int
    started_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    result: str
    reason: str
    def __init__(self, step: _Optional[str] = ..., index: _Optional[int] = ..., kind: _Optional[_Union[StepKind, str]] = ..., attempt: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., result: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("at", "actor", "action", "note", "from_status", "to_status", "correlation_id")
    AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    actor: str
    action: str
    note: str
    from_status: SagaStatus
    to_status: SagaStatus
    correlation_id: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., note: _Optional[str] = ..., from_status: _Optional[_Union[SagaStatus, str]] = ..., to_status: _Optional[_Union[SagaStatus, str]] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class Saga(_message.Message):
    __slots__ = ("summary", "trace_id", "steps", "audit")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    summary: SagaSummary
    trace_id: str
    steps: _containers.RepeatedCompositeFieldContainer[StepRun]
    audit: _containers.RepeatedCompositeFieldContainer[AuditRecord]
    def __init__(self, summary: _Optional[_Union[SagaSummary, _Mapping]] = ..., trace_id: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[StepRun, _Mapping]]] = ..., audit: _Optional[_Iterable[_Union[AuditRecord, _Mapping]]] = ...) -> None: ...

class ListSagasRequest(_message.Message):
    __slots__ = ("filter", "order", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: SagaFilter
    order: SagaOrder
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[SagaFilter, _Mapping]] = ..., order: _Optional[_Union[SagaOrder, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSagasResponse(_message.Message):
    __slots__ = ("sagas", "next_page_token")
    SAGAS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sagas: _containers.RepeatedCompositeFieldContainer[SagaSummary]
    next_page_token: str
    def __init__(self, sagas: _Optional[_Iterable[_Union[SagaSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetSagaRequest(_message.Message):
    __slots__ = ("saga_id", "order_id", "correlation_id")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    order_id: str
    correlation_id: str
    def __init__(self, saga_id: _Optional[str] = ..., order_id: _Optional[str] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class GetSagaResponse(_message.Message):
    __slots__ = ("saga",)
    SAGA_FIELD_NUMBER: _ClassVar[int]
    saga: Saga
    def __init__(self, saga: _Optional[_Union[Saga, _Mapping]] = ...) -> None: ...

class RetrySagaRequest(_message.Message):
    __slots__ = ("saga_id", "note")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    note: str
    def __init__(self, saga_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class RetrySagaResponse(_message.Message):
    __slots__ = ("saga",)
    SAGA_FIELD_NUMBER: _ClassVar[int]
    saga: Saga
    def __init__(self, saga: _Optional[_Union[Saga, _Mapping]] = ...) -> None: ...

class PauseSagaRequest(_message.Message):
    __slots__ = ("saga_id", "note")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    note: str
    def __init__(self, saga_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class PauseSagaResponse(_message.Message):
    __slots__ = ("saga",)
    SAGA_FIELD_NUMBER: _ClassVar[int]
    saga: Saga
    def __init__(self, saga: _Optional[_Union[Saga, _Mapping]] = ...) -> None: ...

class ResumeSagaRequest(_message.Message):
    __slots__ = ("saga_id", "note")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    note: str
    def __init__(self, saga_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ResumeSagaResponse(_message.Message):
    __slots__ = ("saga",)
    SAGA_FIELD_NUMBER: _ClassVar[int]
    saga: Saga
    def __init__(self, saga: _Optional[_Union[Saga, _Mapping]] = ...) -> None: ...

class ResolveSagaRequest(_message.Message):
    __slots__ = ("saga_id", "note")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    note: str
    def __init__(self, saga_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ResolveSagaResponse(_message.Message):
    __slots__ = ("saga",)
    SAGA_FIELD_NUMBER: _ClassVar[int]
    saga: Saga
    def __init__(self, saga: _Optional[_Union[Saga, _Mapping]] = ...) -> None: ...

class BatchItem(_message.Message):
    __slots__ = ("saga_id", "applied", "refusal", "at")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    applied: bool
    refusal: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, saga_id: _Optional[str] = ..., applied: _Optional[bool] = ..., refusal: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BatchResult(_message.Message):
    __slots__ = ("items", "applied", "refused", "next_page_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[BatchItem]
    applied: int
    refused: int
    next_page_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[BatchItem, _Mapping]]] = ..., applied: _Optional[int] = ..., refused: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RetrySagasRequest(_message.Message):
    __slots__ = ("filter", "rate_per_second", "limit", "page_token", "note")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    filter: SagaFilter
    rate_per_second: float
    limit: int
    page_token: str
    note: str
    def __init__(self, filter: _Optional[_Union[SagaFilter, _Mapping]] = ..., rate_per_second: _Optional[float] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class RetrySagasResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: BatchResult
    def __init__(self, result: _Optional[_Union[BatchResult, _Mapping]] = ...) -> None: ...

class ResumeSagasRequest(_message.Message):
    __slots__ = ("filter", "rate_per_second", "limit", "page_token", "note")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    filter: SagaFilter
    rate_per_second: float
    limit: int
    page_token: str
    note: str
    def __init__(self, filter: _Optional[_Union[SagaFilter, _Mapping]] = ..., rate_per_second: _Optional[float] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ResumeSagasResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: BatchResult
    def __init__(self, result: _Optional[_Union[BatchResult, _Mapping]] = ...) -> None: ...
