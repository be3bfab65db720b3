"""gRPC telemetry: upstream's server/client spans in one trace, and what we add inside them —
the correlation id on the span and in baggage, RED metrics with the span's trace as exemplar."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry import baggage, trace
from opentelemetry.trace import SpanKind

from sagascope.common import correlation
from sagascope.common.errors import NotFound
from tests.support.telemetry_testing import ECHO_METHOD, ECHO_SERVICE, in_memory_telemetry, start_echo_server

GRPC_SCOPE = "opentelemetry.instrumentation.grpc"


def sample(registry, name: str, labels: dict[str, str]) -> float | None:  # type: ignore[no-untyped-def]
    return registry.get_sample_value(name, labels)


def exemplar_trace_ids(registry, histogram: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {
        s.exemplar.labels["trace_id"]
        for metric in registry.collect()
        for s in metric.samples
        if s.name == f"{histogram}_bucket" and s.exemplar is not None
    }


async def test_order_to_payment_is_one_trace_and_carries_the_correlation_id_in_baggage() -> None:
    seen: dict[str, object] = {}
    with in_memory_telemetry("order-service") as captured:
        telemetry = captured.telemetry

        async def payment(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            seen["correlation"] = correlation.current()
            seen["baggage"] = baggage.get_baggage("correlation_id")
            seen["metadata"] = dict(context.invocation_metadata() or ())
            return b"paid"

        downstream = await start_echo_server(payment, telemetry.server_interceptors())
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{downstream.port}", interceptors=telemetry.client_interceptors()
        )

        async def order(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            # Business code passes no metadata: telemetry carries the trace and the correlation id.
            return await channel.unary_unary(ECHO_METHOD)(b"charge")  # type: ignore[no-any-return]

        upstream = await start_echo_server(order, telemetry.server_interceptors())
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{upstream.port}") as client:
                call = client.unary_unary(ECHO_METHOD)(b"order", metadata=(("x-correlation-id", "corr-42"),))
                assert await call == b"paid"
                assert ("x-correlation-id", "corr-42") in tuple(await call.initial_metadata())
        finally:
            await channel.close()
            await upstream.stop()
            await downstream.stop()
        spans = captured.spans.get_finished_spans()

    assert seen["correlation"] == "corr-42"
    assert seen["baggage"] == "corr-42"
    assert "correlation_id=corr-42" in str(seen["metadata"]["baggage"])  # type: ignore[index]
    servers = [span for span in spans if span.kind == SpanKind.SERVER]
    clients = [span for span in spans if span.kind == SpanKind.CLIENT]
    assert len(servers) == 2 and len(clients) == 1
    assert {span.instrumentation_scope.name for span in servers + clients} == {GRPC_SCOPE}
    assert len({span.context.trace_id for span in spans}) == 1
    outer = next(s for s in servers if s.parent is None)
    inner = next(s for s in servers if s.parent is not None)
    assert clients[0].parent is not None and clients[0].parent.span_id == outer.context.span_id
    assert inner.parent is not None and inner.parent.span_id == clients[0].context.span_id
    for server in servers:
        assert server.attributes is not None and server.attributes["correlation_id"] == "corr-42"


async def test_red_metrics_count_status_codes_of_mapped_domain_errors() -> None:
    with in_memory_telemetry() as captured:
        telemetry = captured.telemetry

        async def rejecting(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            if request == b"missing":
                raise NotFound("no such order")
            return b"ok"

        server = await start_echo_server(rejecting, telemetry.server_interceptors())
        try:
            async with grpc.aio.insecure_channel(
                f"127.0.0.1:{server.port}", interceptors=telemetry.client_interceptors()
            ) as channel:
                method = channel.unary_unary(ECHO_METHOD)
                assert await method(b"fine") == b"ok"
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await method(b"missing")
                assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        finally:
            await server.stop()
        registry = telemetry.metrics.registry
        labels = {"grpc_type": "unary", "grpc_service": ECHO_SERVICE, "grpc_method": "Call"}
        for side in ("server", "client"):
            assert sample(registry, f"grpc_{side}_started_total", labels) == 2
            assert sample(registry, f"grpc_{side}_handled_total", {**labels, "grpc_code": "OK"}) == 1
            assert sample(registry, f"grpc_{side}_handled_total", {**labels, "grpc_code": "NOT_FOUND"}) == 1
            assert sample(registry, f"grpc_{side}_handling_seconds_count", labels) == 2
        # NOT_FOUND is the caller's problem: per the RPC conventions the server span records the
        # code but is not an error; the client span is.
        codes = {
            span.kind: (span.attributes or {}).get("rpc.grpc.status_code")
            for span in captured.spans.get_finished_spans()
            if span.status.status_code != trace.StatusCode.UNSET or span.kind == SpanKind.SERVER
        }
        assert codes[SpanKind.SERVER] == grpc.StatusCode.NOT_FOUND.value[0]
        assert codes[SpanKind.CLIENT] == grpc.StatusCode.NOT_FOUND.value[0]
        handled = [line for line in captured.json_lines() if line["event"] == "grpc.server.handled"]
        assert [line["grpc.code"] for line in handled] == ["OK", "NOT_FOUND"]


async def test_the_correlation_id_is_accepted_from_baggage_when_there_is_no_header() -> None:
    with in_memory_telemetry() as captured:
        seen: list[str | None] = []

        async def behavior(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            seen.append(correlation.current())
            return b""

        server = await start_echo_server(behavior, captured.telemetry.server_interceptors())
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                call = channel.unary_unary(ECHO_METHOD)(
                    b"", metadata=(("baggage", "a=1,correlation_id=from-bag"),)
                )
                await call
                assert ("x-correlation-id", "from-bag") in tuple(await call.initial_metadata())
                call = channel.unary_unary(ECHO_METHOD)(b"")
                await call
                generated = dict(tuple(await call.initial_metadata()))["x-correlation-id"]
        finally:
            await server.stop()
    assert seen == ["from-bag", generated]
    assert len(str(generated)) == 32


def test_correlation_from_baggage_header_parses_w3c_baggage() -> None:
    assert correlation.from_baggage_header("k=v, correlation_id=abc-1;prop=x") == "abc-1"
    assert correlation.from_baggage_header("k=v") is None
    assert correlation.from_baggage_header(None) is None
    assert correlation.from_metadata((("x-correlation-id", "h"), ("baggage", "correlation_id=b"))) == "h"


async def test_health_checks_are_counted_but_not_traced_or_logged() -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with in_memory_telemetry() as captured:
        server = await start_echo_server(_ok, captured.telemetry.server_interceptors())
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                reply = await health.Check(health_pb2.HealthCheckRequest(service=ECHO_SERVICE))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
                assert await channel.unary_unary(ECHO_METHOD)(b"") == b"ok"
        finally:
            await server.stop()
        labels = {"grpc_type": "unary", "grpc_service": "grpc.health.v1.Health", "grpc_method": "Check"}
        assert sample(captured.telemetry.metrics.registry, "grpc_server_started_total", labels) == 1
    assert [span.name for span in captured.spans.get_finished_spans()] == [ECHO_METHOD]
    assert [line["grpc.service"] for line in captured.json_lines() if line["event"] == "grpc.server.handled"] == [
        ECHO_SERVICE
    ]


async def _ok(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"ok"


async def test_the_server_span_carries_the_rpc_attributes_and_an_error_status_for_server_faults() -> None:
    async def failing(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if request == b"boom":
            raise RuntimeError("database on fire")
        await context.abort(grpc.StatusCode.UNAVAILABLE, "payment is down")
        raise AssertionError("abort returned")

    with in_memory_telemetry() as captured:
        server = await start_echo_server(failing, captured.telemetry.server_interceptors())
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                # An unexpected exception reaches the caller as INTERNAL (ErrorMappingInterceptor).
                for request, code in ((b"down", grpc.StatusCode.UNAVAILABLE), (b"boom", grpc.StatusCode.INTERNAL)):
                    with pytest.raises(grpc.aio.AioRpcError) as raised:
                        await channel.unary_unary(ECHO_METHOD)(request)
                    assert raised.value.code() == code
        finally:
            await server.stop()
    down, boom = captured.spans.get_finished_spans()
    attributes = dict(down.attributes or {})
    assert down.name == ECHO_METHOD and down.kind == SpanKind.SERVER
    assert attributes["rpc.system"] == "grpc" and attributes["rpc.service"] == ECHO_SERVICE
    assert attributes["rpc.method"] == "Call" and attributes["net.peer.ip"] == "127.0.0.1"
    assert attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAVAILABLE.value[0]
    assert down.status.status_code == trace.StatusCode.ERROR
    assert down.status.description == "StatusCode.UNAVAILABLE:payment is down"
    assert boom.status.status_code == trace.StatusCode.ERROR
    assert (boom.status.description or "").startswith("StatusCode.INTERNAL:internal error; quote correlation id")


async def test_the_rpc_exemplars_carry_the_trace_of_upstreams_span() -> None:
    """Our interceptors run inside upstream's spans: with no trace before the call, the only trace
    is the one upstream's CLIENT span starts, and both histograms' exemplars must name it."""
    with in_memory_telemetry() as captured:
        telemetry = captured.telemetry
        server = await start_echo_server(_ok, telemetry.server_interceptors())
        try:
            async with grpc.aio.insecure_channel(
                f"127.0.0.1:{server.port}", interceptors=telemetry.client_interceptors()
            ) as channel:
                assert trace.get_current_span().get_span_context().is_valid is False
                assert await channel.unary_unary(ECHO_METHOD)(b"") == b"ok"
        finally:
            await server.stop()
        registry = telemetry.metrics.registry
    (server_span,) = [s for s in captured.spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    (client_span,) = [s for s in captured.spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert server_span.instrumentation_scope.name == client_span.instrumentation_scope.name == GRPC_SCOPE
    assert client_span.parent is None and server_span.parent is not None
    trace_id = format(server_span.context.trace_id, "032x")
    assert exemplar_trace_ids(registry, "grpc_server_handling_seconds") == {trace_id}
    assert exemplar_trace_ids(registry, "grpc_client_handling_seconds") == {trace_id}


async def test_excluded_services_from_the_upstream_variable_get_no_span(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_GRPC_EXCLUDED_SERVICES", ECHO_SERVICE)
    with in_memory_telemetry() as captured:
        server = await start_echo_server(_ok, captured.telemetry.server_interceptors())
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                assert await channel.unary_unary(ECHO_METHOD)(b"") == b"ok"
        finally:
            await server.stop()
        labels = {"grpc_type": "unary", "grpc_service": ECHO_SERVICE, "grpc_method": "Call"}
        assert sample(captured.telemetry.metrics.registry, "grpc_server_started_total", labels) == 1
    assert captured.spans.get_finished_spans() == ()
