"""Property-based fuzzing of every RPC of every service and of HTTP POST /auth/login, over real
sockets. Invariants: never UNKNOWN/INTERNAL (or HTTP 5xx); never DEADLINE_EXCEEDED within the short
deadline (FUZZ_DEADLINE_SECONDS, 5) unless the call asked for a latency fault; every INVALID_ARGUMENT names a field
(message and ``BadRequest``); the services stay SERVING and keep answering valid requests; no log
line carries a password or token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2
from hypothesis import given
from hypothesis import strategies as st

from sagascope.api.identity.v1 import identity_pb2
from sagascope.api.payments.v1 import payments_pb2
from tests.fuzz.harness import CALL_DEADLINE, TALLY, LogCapture, Services, check_refusal, every_method, method_path
from tests.fuzz.strategies import EDGE_TEXT, fault_headers, login_bodies, messages, request_bytes


def _assert_no_secret_logged(services: Services, log_capture: LogCapture) -> None:
    for secret in services.secrets:
        leaked = log_capture.containing(secret)
        assert not leaked, f"a secret reached the logs: {leaked[0][:300]}"


def _is_distinctive(password: str, username: str) -> bool:
    """Worth searching the logs for: long, varied, and not also something logged on purpose."""
    return len(password) >= 12 and len(set(password)) >= 5 and password not in username and password not in EDGE_TEXT


@pytest.mark.parametrize(("service", "method"), every_method(), ids=lambda v: getattr(v, "name", v))
def test_generated_and_mutated_requests(
    services: Services, log_capture: LogCapture, service: str, method: MethodDescriptor
) -> None:
    @given(payload=request_bytes(method.input_type), faults=fault_headers())
    def one(payload: bytes, faults: tuple[str, ...]) -> None:
        mark = log_capture.mark()
        services.call(service, method, payload, faults)
        if method.name == "Login":
            try:
                parsed = identity_pb2.LoginRequest.FromString(payload)
            except Exception:  # corrupt bytes: no password to look for
                return
            # Only this call's lines: another example may log this text as a username, legitimately.
            if _is_distinctive(parsed.password, parsed.username):
                assert not log_capture.containing(parsed.password, since=mark)

    one()
    services.assert_healthy()
    _assert_no_secret_logged(services, log_capture)


@pytest.mark.parametrize("service", ["identity", "payment", "order"])
def test_health_check_requests(services: Services, service: str) -> None:
    method = health_pb2.DESCRIPTOR.services_by_name["Health"].methods_by_name["Check"]

    @given(payload=request_bytes(method.input_type))
    def one(payload: bytes) -> None:
        try:
            services.channels[service].unary_unary(method_path(method))(payload, timeout=CALL_DEADLINE)
            TALLY.add(f"{method_path(method)} ({service})", "OK")
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            TALLY.add(f"{method_path(method)} ({service})", code.name)
            # An unknown service name is NOT_FOUND; bytes that do not decode INVALID_ARGUMENT.
            assert code in {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}, error

    one()
    services.assert_healthy()


def _post_login(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=CALL_DEADLINE) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@given(
    body=login_bodies(),
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
)
def test_http_login_bodies(services: Services, log_capture: LogCapture, body: bytes, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    status, response_headers, raw = _post_login(f"{services.http_url}/auth/login", body, headers)
    TALLY.add("POST /auth/login", str(status))
    assert status < 500, raw[:300]
    assert status in {200, 400, 401, 413, 429}, (status, raw[:300])
    document = json.loads(raw)
    if status == 400:
        assert document["error"] == "invalid_request" and document.get("field"), document
    if status == 429:
        assert int(response_headers["Retry-After"]) >= 1


def test_http_login_still_works_and_logs_no_secret(services: Services, log_capture: LogCapture) -> None:
    # The capture sees the services' records (else the secret checks would prove nothing).
    login = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].methods_by_name["Login"]
    services.call("identity", login, b"\x0a\x7f")
    assert log_capture.containing("undecodable sagascope.identity.v1.LoginRequest request (2 bytes)")
    body = json.dumps({"username": "alice", "password": "alice-dev-password"}).encode()
    status, _, raw = _post_login(f"{services.http_url}/auth/login", body, {"Content-Type": "application/json"})
    assert status == 200, raw
    services.secrets.append(json.loads(raw)["access_token"])
    services.assert_healthy()
    _assert_no_secret_logged(services, log_capture)


@given(message=messages(identity_pb2.LoginRequest.DESCRIPTOR))
def test_login_messages_never_log_their_password(services: Services, log_capture: LogCapture, message) -> None:  # type: ignore[no-untyped-def]
    method = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].methods_by_name["Login"]
    mark = log_capture.mark()
    services.call("identity", method, message.SerializeToString())
    if _is_distinctive(message.password, message.username):
        assert not log_capture.containing(message.password, since=mark)


def test_a_call_past_its_deadline_fails_unless_it_asked_for_latency(services: Services) -> None:
    """The deadline check can fail: a real DEADLINE_EXCEEDED (the payment-latency fault, 3 s, against
    a 1 s deadline) passes when the call asked for it, and fails when it did not."""
    method = payments_pb2.DESCRIPTOR.services_by_name["PaymentService"].methods_by_name["ProcessPayment"]
    payload = payments_pb2.ProcessPaymentRequest(order_id="fuzz-slow", amount_minor=100, currency="EUR",
                                                 idempotency_key="fuzz-slow").SerializeToString()
    assert services.call("payment", method, payload, ("payment_latency",), deadline=1.0) == \
        grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(grpc.RpcError) as slow:
        services.channels["payment"].unary_unary(method_path(method))(
            payload, metadata=(*services.metadata("payment"), ("x-sagascope-fault", "payment_latency")), timeout=1.0)
    with pytest.raises(AssertionError, match="without asking for a latency fault"):
        check_refusal(method_path(method), slow.value, services.metadata("payment"))  # as if it had not asked
    with pytest.raises(AssertionError, match="asked for: payment_decline"):
        check_refusal(method_path(method), slow.value,
                      (*services.metadata("payment"), ("x-sagascope-fault", "payment_decline")))
