"""The upstream OpenTelemetry contrib instrumentations, configured in one place.

gRPC (aio server and client), SQLAlchemy, pymongo and aiohttp spans come from the
``opentelemetry-instrumentation-*`` packages as they are; sagascope adds only what
they do not (grpc_interceptors.py, correlation.py). Their ``OTEL_PYTHON_*`` and
``OTEL_SEMCONV_STABILITY_OPT_IN`` settings are honoured.

gRPC uses the interceptor factories, not ``GrpcAioInstrumentor{Server,Client}``:
those patch ``grpc.aio.server``/``grpc.aio.*_channel`` process-wide with the first
tracer provider they are given and put their interceptor first in every chain.
The factories give each service's Telemetry its own provider and let
:class:`~sagascope.common.telemetry.Telemetry` place the span interceptor where our
interceptors need it (ours run inside its span, so exemplars carry its trace id).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.trace import TracerProvider

from sagascope.common.interceptors import split_method

SEMCONV_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
# The stable database and HTTP conventions (db.system.name, db.namespace, db.query.text,
# server.address, http.request.method, ...) instead of the pre-1.26 names the instrumentations
# still default to. gRPC's instrumentation has no opt-in yet (its rpc.* names are unchanged).
DEFAULT_SEMCONV_OPT_IN = "database,http"
EXCLUDED_SERVICES = "OTEL_PYTHON_GRPC_EXCLUDED_SERVICES"

CallFilter = Callable[[Any], bool]

# Health checks and reflection: polled every few seconds, they would drown the traces.
INFRASTRUCTURE_PREFIXES = ("grpc.health.v1.Health", "grpc.reflection.")


def service_of(details: Any) -> str:
    """The service part of a call's ``/package.Service/Method`` (server or client call details)."""
    return split_method(details.method)[0]


def is_infrastructure_service(service: str) -> bool:
    return service.startswith(INFRASTRUCTURE_PREFIXES)


class UntracedCalls:
    """A call filter: true for health, reflection and the named services.

    The same rules as upstream's ``filters.any_of(health_check(), service_prefix(...),
    service_name(...))``, in one string test: those composed filters run on every call, and each
    one resolves the method with isinstance checks against runtime protocols (~2 % of the order
    service's CPU under load).
    """

    def __init__(self, excluded_services: frozenset[str] = frozenset()) -> None:
        self.excluded_services = excluded_services

    def __call__(self, details: Any) -> bool:
        service = service_of(details)
        return is_infrastructure_service(service) or service in self.excluded_services


def default_semconv_opt_in() -> None:
    """Opt the instrumentations into the stable conventions unless the user chose already.

    Must run before the first instrumentor: they read the variable once per process.
    """
    os.environ.setdefault(SEMCONV_OPT_IN, DEFAULT_SEMCONV_OPT_IN)


def traced_call_filter() -> CallFilter:
    """Which calls get a span: not health/reflection, nor a service in
    ``OTEL_PYTHON_GRPC_EXCLUDED_SERVICES`` (the factories do not read that variable themselves,
    only the global instrumentors do; it is applied here with the same rules as upstream's filters)."""
    excluded = frozenset(name.strip() for name in os.environ.get(EXCLUDED_SERVICES, "").split(",") if name.strip())
    untraced = UntracedCalls(excluded)
    return lambda details: not untraced(details)


def grpc_server_span_interceptor(tracer_provider: TracerProvider) -> grpc.aio.ServerInterceptor:
    """Upstream's SERVER span: named by the full method, parented on the caller's ``traceparent``."""
    return aio_server_interceptor(tracer_provider=tracer_provider, filter_=traced_call_filter())  # type: ignore[no-any-return]


def grpc_client_span_interceptors(tracer_provider: TracerProvider) -> list[grpc.aio.ClientInterceptor]:
    """Upstream's CLIENT span, injecting ``traceparent`` and ``baggage`` into the call's metadata."""
    return list(aio_client_interceptors(tracer_provider=tracer_provider, filter_=traced_call_filter()))
