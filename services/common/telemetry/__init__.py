"""One setup call gives a service all of its telemetry.

``init_telemetry(service_name)`` configures logging (JSON lines to stdout),
and returns a :class:`Telemetry` whose interceptors, saga observer and breaker
sink the service wires in. Traces, OTLP export and Prometheus metrics are
filled in by the telemetry issue behind this same surface.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from services.common.saga.observer import NoopSagaObserver, SagaObserver

BreakerStateSink = Callable[[str, int], None]
"""Called with (target, state) on every breaker transition: 0 closed, 1 half-open, 2 open."""


@dataclass
class Telemetry:
    service_name: str
    saga_observer: SagaObserver = field(default_factory=NoopSagaObserver)

    def server_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        return []

    def client_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        return []

    def breaker_state_sink(self) -> BreakerStateSink:
        return lambda target, state: None

    def start_metrics_server(self, port: int) -> None:
        pass

    def shutdown(self) -> None:
        logging.shutdown()


def init_telemetry(service_name: str, service_version: str = "0.1.0") -> Telemetry:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {service_name} %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    return Telemetry(service_name=service_name)
