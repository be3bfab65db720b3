"""SagaAdminService over gRPC: validate the request, call the operations, map to messages.

Who may call what is :data:`METHOD_ROLES` (reads ``sagas.read``, changes ``sagas.operate``),
enforced by the shared :class:`~sagascope.common.auth.AuthInterceptor`; the caller's subject
is the operator every change is audited under.
"""

from __future__ import annotations

import math
from typing import cast

import grpc

from sagascope.api.admin.v1 import admin_pb2, admin_pb2_grpc
from sagascope.common import correlation
from sagascope.common.auth import SAGAS_OPERATE, SAGAS_READ, caller
from sagascope.common.errors import InvalidArgument
from sagascope.common.timestamps import epoch_timestamp
from sagascope.common.validation import optional_text, require_id, require_range
from sagascope.saga.admin.operations import (
    Action,
    BatchOutcome,
    Operator,
    SagaAdmin,
    SagaDetail,
    SagaFilter,
    SagaOrder,
    SagaView,
)
from sagascope.saga.store import SagaStatus

SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["SagaAdminService"].full_name
_READS = ("ListSagas", "GetSaga")
_CHANGES = ("RetrySaga", "PauseSaga", "ResumeSaga", "ResolveSaga", "RetrySagas", "ResumeSagas")
METHOD_ROLES = {
    **{f"/{SERVICE_NAME}/{m}": SAGAS_READ for m in _READS},
    **{f"/{SERVICE_NAME}/{m}": SAGAS_OPERATE for m in _CHANGES},
}
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 200
DEFAULT_BATCH_LIMIT, MAX_BATCH_LIMIT = 100, 1000
MAX_RATE_PER_SECOND = 100.0
# One batch call paces at most this long; the CLI continues with next_page_token.
MAX_BATCH_SECONDS = 600.0

_STATUS_TO_PROTO: dict[SagaStatus, admin_pb2.SagaStatus] = {
    s: cast(admin_pb2.SagaStatus, admin_pb2.SagaStatus.Value(f"SAGA_STATUS_{s.value}")) for s in SagaStatus
}
_PROTO_TO_STATUS = {v: k for k, v in _STATUS_TO_PROTO.items()}
_KIND = {"action": admin_pb2.STEP_KIND_ACTION, "compensation": admin_pb2.STEP_KIND_COMPENSATION}


def parse_filter(message: admin_pb2.SagaFilter, default_status: SagaStatus | None = None) -> SagaFilter:
    if message.status != admin_pb2.SAGA_STATUS_UNSPECIFIED and message.status not in _PROTO_TO_STATUS:
        raise InvalidArgument("filter.status", f"unknown saga status {message.status}")
    if message.saga_name:
        require_id(message.saga_name, "filter.saga_name", max_length=64)
    if message.step:
        require_id(message.step, "filter.step", max_length=64)
    older_than = message.older_than.ToTimedelta().total_seconds() if message.HasField("older_than") else 0.0
    if older_than < 0:
        raise InvalidArgument("filter.older_than", "must not be negative")
    return SagaFilter(
        status=_PROTO_TO_STATUS.get(message.status, default_status),
        saga_name=message.saga_name,
        step=message.step,
        older_than_s=older_than,
    )


def _page_token(token: str) -> str:
    if len(token) > 512:
        raise InvalidArgument("page_token", "is not a token returned by ListSagas")
    return token


def _operator() -> Operator:
    return Operator(caller().subject, correlation.current() or "")


def summary(view: SagaView) -> admin_pb2.SagaSummary:
    r = view.record
    return admin_pb2.SagaSummary(
        saga_id=r.id,
        saga_name=r.name,
        status=_STATUS_TO_PROTO[r.status],
        step=view.step,
        order_id=r.reference,
        correlation_id=r.correlation_id,
        created_at=epoch_timestamp(r.created_at),
        updated_at=epoch_timestamp(r.updated_at),
        attempts=r.attempts,
        failure_reason=r.failure_reason,
        failure_kind=r.failure_kind.value,
        lease_owner=r.lease_owner,
        lease_expires_at=epoch_timestamp(r.lease_expires_at),
        next_attempt_at=epoch_timestamp(r.next_attempt_at),
        paused_from=_STATUS_TO_PROTO[SagaStatus(r.paused_from)] if r.paused_from else None,
        resolution=r.resolution,
    )


def saga_message(detail: SagaDetail) -> admin_pb2.Saga:
    r = detail.view.record
    parts = r.traceparent.split("-")
    return admin_pb2.Saga(
        summary=summary(detail.view),
        trace_id=parts[1] if len(parts) == 4 else "",
        steps=[
            admin_pb2.StepRun(
                step=e["step"],
                index=e["index"],
                kind=_KIND.get(e["kind"], admin_pb2.STEP_KIND_UNSPECIFIED),
                attempt=e.get("attempt", 1),
                started_at=epoch_timestamp(e.get("started_at", 0.0)),
                ended_at=epoch_timestamp(e.get("ended_at", 0.0)),
                result=e.get("result", ""),
                reason=e.get("reason", ""),
            )
            for e in r.history
        ],
        audit=[
            admin_pb2.AuditRecord(
                at=epoch_timestamp(a.at),
                actor=a.actor,
                action=a.action,
                note=a.note,
                from_status=_STATUS_TO_PROTO[SagaStatus(a.from_status)],
                to_status=_STATUS_TO_PROTO[SagaStatus(a.to_status)],
                correlation_id=a.correlation_id,
            )
            for a in detail.audit
        ],
    )


def _batch_result(outcome: BatchOutcome) -> admin_pb2.BatchResult:
    return admin_pb2.BatchResult(
        items=[
            admin_pb2.BatchItem(saga_id=i.saga_id, applied=i.applied, refusal=i.refusal, at=epoch_timestamp(i.at))
            for i in outcome.items
        ],
        applied=sum(1 for i in outcome.items if i.applied),
        refused=sum(1 for i in outcome.items if not i.applied),
        next_page_token=outcome.next_page_token,
    )


class SagaAdminServicer(admin_pb2_grpc.SagaAdminServiceServicer):
    def __init__(self, admin: SagaAdmin) -> None:
        self.admin = admin

    async def ListSagas(
        self, request: admin_pb2.ListSagasRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListSagasResponse:
        page_size = request.page_size or DEFAULT_PAGE_SIZE
        require_range(page_size, "page_size", 1, MAX_PAGE_SIZE)
        if request.order not in (admin_pb2.SAGA_ORDER_UNSPECIFIED, admin_pb2.SAGA_ORDER_NEWEST,
                                 admin_pb2.SAGA_ORDER_STALEST):
            raise InvalidArgument("order", f"unknown order {request.order}")
        order = SagaOrder.STALEST if request.order == admin_pb2.SAGA_ORDER_STALEST else SagaOrder.NEWEST
        views, token = await self.admin.list(
            parse_filter(request.filter), order, page_size, _page_token(request.page_token)
        )
        return admin_pb2.ListSagasResponse(sagas=[summary(v) for v in views], next_page_token=token)

    async def GetSaga(
        self, request: admin_pb2.GetSagaRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.GetSagaResponse:
        which = request.WhichOneof("ref")
        if which is None:
            raise InvalidArgument("ref", "one of saga_id, order_id or correlation_id is required")
        value = require_id(getattr(request, which), which)
        detail = await self.admin.get(
            saga_id=value if which == "saga_id" else "",
            reference=value if which == "order_id" else "",
            correlation_id=value if which == "correlation_id" else "",
        )
        return admin_pb2.GetSagaResponse(saga=saga_message(detail))

    async def _change(self, action: Action, saga_id: str, note: str, note_required: bool = False) -> admin_pb2.Saga:
        require_id(saga_id, "saga_id")
        optional_text(note, "note")
        if note_required and not note.strip():
            raise InvalidArgument("note", "is required: say what was done outside the system, and where")
        return saga_message(await self.admin.change(action, saga_id, _operator(), note))

    async def RetrySaga(
        self, request: admin_pb2.RetrySagaRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.RetrySagaResponse:
        return admin_pb2.RetrySagaResponse(saga=await self._change(Action.RETRY, request.saga_id, request.note))

    async def PauseSaga(
        self, request: admin_pb2.PauseSagaRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.PauseSagaResponse:
        return admin_pb2.PauseSagaResponse(saga=await self._change(Action.PAUSE, request.saga_id, request.note))

    async def ResumeSaga(
        self, request: admin_pb2.ResumeSagaRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ResumeSagaResponse:
        return admin_pb2.ResumeSagaResponse(saga=await self._change(Action.RESUME, request.saga_id, request.note))

    async def ResolveSaga(
        self, request: admin_pb2.ResolveSagaRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ResolveSagaResponse:
        saga = await self._change(Action.RESOLVE, request.saga_id, request.note, note_required=True)
        return admin_pb2.ResolveSagaResponse(saga=saga)

    async def _batch(
        self,
        action: Action,
        request: admin_pb2.RetrySagasRequest | admin_pb2.ResumeSagasRequest,
        default_status: SagaStatus,
    ) -> admin_pb2.BatchResult:
        rate = request.rate_per_second
        if not math.isfinite(rate) or not 0 < rate <= MAX_RATE_PER_SECOND:
            raise InvalidArgument(
                "rate_per_second", f"must be above 0 and at most {MAX_RATE_PER_SECOND:g} sagas a second, got {rate:g}"
            )
        limit = request.limit or DEFAULT_BATCH_LIMIT
        require_range(limit, "limit", 1, MAX_BATCH_LIMIT)
        if limit / rate > MAX_BATCH_SECONDS:
            raise InvalidArgument(
                "limit",
                f"{limit} sagas at {rate:g} a second would take {limit / rate:.0f} s; one call paces at most "
                f"{MAX_BATCH_SECONDS:.0f} s: lower the limit and continue with next_page_token",
            )
        optional_text(request.note, "note")
        outcome = await self.admin.batch(
            action,
            parse_filter(request.filter, default_status),
            rate,
            limit,
            _page_token(request.page_token),
            _operator(),
            request.note,
        )
        return _batch_result(outcome)

    async def RetrySagas(
        self, request: admin_pb2.RetrySagasRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.RetrySagasResponse:
        return admin_pb2.RetrySagasResponse(result=await self._batch(Action.RETRY, request, SagaStatus.FAILED))

    async def ResumeSagas(
        self, request: admin_pb2.ResumeSagasRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ResumeSagasResponse:
        return admin_pb2.ResumeSagasResponse(result=await self._batch(Action.RESUME, request, SagaStatus.PAUSED))
