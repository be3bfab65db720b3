"""Which gRPC calls get a span: our one-string-test filter agrees with upstream's composed filters
(health, reflection, OTEL_PYTHON_GRPC_EXCLUDED_SERVICES) on server and client call details."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.instrumentation.grpc import filters

from sagascope.common.telemetry.instrumentation import UntracedCalls, service_of

METHODS = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/sagascope.orders.v1.OrderService/CreateOrder",
    "/sagascope.payments.v1.PaymentService/ProcessPayment",
    "/sagascope.identity.v1.IdentityService/IssueToken",
    "/grpc.healthy.Lookalike/Check",
    "/NoPackage/Call",
    "/",
    "",
]
EXCLUDED = frozenset({"sagascope.identity.v1.IdentityService"})


class _ServerDetails(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def _client_details(method: str) -> grpc.aio.ClientCallDetails:
    # grpc.aio hands client interceptors the method as bytes (grpc/grpc#31092)
    return grpc.aio.ClientCallDetails(method.encode(), None, None, None, None)  # type: ignore[arg-type]


def _upstream(excluded: frozenset[str]) -> filters.Condition:  # type: ignore[type-arg]
    return filters.any_of(
        filters.health_check(),
        filters.service_prefix("grpc.reflection."),
        *(filters.service_name(name) for name in excluded),
    )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("excluded", [frozenset(), EXCLUDED])
def test_same_verdict_as_upstreams_filters(method: str, excluded: frozenset[str]) -> None:
    ours, upstream = UntracedCalls(excluded), _upstream(excluded)
    for details in (_ServerDetails(method), _client_details(method)):
        assert ours(details) == upstream(details), (method, type(details).__name__)


def test_service_of_reads_str_and_bytes_methods() -> None:
    assert service_of(_ServerDetails("/a.b.C/D")) == "a.b.C"
    assert service_of(_client_details("/a.b.C/D")) == "a.b.C"
    assert UntracedCalls()(_ServerDetails("/grpc.health.v1.Health/Check"))
    assert not UntracedCalls()(_ServerDetails("/sagascope.orders.v1.OrderService/CreateOrder"))
