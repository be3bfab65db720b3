"""The payment participant proxy: owns the stub, the deadline, the breaker and the token.

Saga code calls ``charge`` / ``refund`` and never sees an address or a channel.
"""

from __future__ import annotations

import grpc

from sagascope.api.payments.v1 import payments_pb2, payments_pb2_grpc
from sagascope.common import validation
from sagascope.common.auth import ServiceTokenSource
from sagascope.common.faults import Fault, FaultInjector
from sagascope.common.resilience import Downstream, DownstreamUnavailable, NotSent


class PaymentParticipant:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        downstream: Downstream,
        tokens: ServiceTokenSource,
        faults: FaultInjector,
    ) -> None:
        self._stub = payments_pb2_grpc.PaymentServiceStub(channel)
        self.downstream = downstream
        self._tokens = tokens
        self._faults = faults

    async def charge(self, order_id: str, amount_minor: int, currency: str, key: str) -> payments_pb2.Payment:
        request = payments_pb2.ProcessPaymentRequest(
            order_id=order_id, amount_minor=amount_minor, currency=currency, idempotency_key=key
        )
        reply = await self._call(self._stub.ProcessPayment, request)
        return reply.payment

    async def refund(
        self, *, payment_id: str, charge_key: str, key: str, reason: str
    ) -> payments_pb2.Payment:
        """Refund by payment id, or by the charge's idempotency key when its reply was lost."""
        request = payments_pb2.RefundPaymentRequest(
            payment_id=payment_id,
            charge_idempotency_key="" if payment_id else charge_key,
            idempotency_key=key,
            reason=validation.one_line(reason),
        )
        reply = await self._call(self._stub.RefundPayment, request)
        return reply.payment

    async def _call(self, method, request):  # type: ignore[no-untyped-def]
        try:
            auth = await self._tokens.metadata()
        except Exception as exc:
            # Nothing reached payment: the call is certainly not applied.
            raise DownstreamUnavailable(
                "identity-service",
                f"no service token: {exc}",
                grpc.StatusCode.UNAVAILABLE,
                maybe_applied=False,
            ) from exc
        # The correlation id is added by the channel's telemetry interceptor, with the baggage.
        metadata = auth + self._faults.outgoing_metadata()

        async def invoke(timeout_s: float):  # type: ignore[no-untyped-def]
            if self._faults.should(Fault.PAYMENT_UNREACHABLE):
                raise NotSent("payment-service unreachable (injected fault payment_unreachable)")
            return await method(request, timeout=timeout_s, metadata=metadata)

        return await self.downstream.call(invoke)
