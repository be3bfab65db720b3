"""hypothesis strategies for request messages, built from the protobuf descriptors (so a new field
is fuzzed without touching this file), for mutated encodings and for login bodies."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from tests.fuzz.harness import message_class

INT64 = (-(2**63), 2**63 - 1)
INT32 = (-(2**31), 2**31 - 1)

# Strings that have found bugs before, or that sit on a validation edge.
EDGE_TEXT = [
    "", "alice", "bob\n", "bob\r\n", "\nbob", "a" * 128, "a" * 129, "a" * 5000, "x\x00y", "ünïcödé", "🦀",
    "EUR", "eur", "XXX", "../../etc/passwd", "' OR 1=1 --", "${jndi:ldap://x}", "%s%n", "SKU-1", "order-1",
]  # fmt: skip

text = st.one_of(
    st.sampled_from(EDGE_TEXT), st.text(max_size=40), st.from_regex(r"[A-Za-z0-9._:@/+=-]{1,40}", fullmatch=True)
)


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return text
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=40)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return st.one_of(st.sampled_from([0, 1, -1, 100, 10**12, *INT64]), st.integers(*INT64))
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return st.one_of(st.sampled_from([0, 1, -1, 100, 101, *INT32]), st.integers(*INT32))
    if kind == FieldDescriptor.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(*INT32))  # unknown numbers too
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    raise NotImplementedError(field.full_name)


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor`` with any subset of fields set to generated values."""
    cls = message_class(descriptor.full_name)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth > 2:
                continue
            value: st.SearchStrategy[Any] = messages(field.message_type, depth + 1)
        else:
            value = _scalar(field)
        if field.is_repeated:
            value = st.lists(value, max_size=4)
        fields[field.name] = value

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for name, strategy in fields.items():
            if not draw(st.booleans()):
                continue
            value = draw(strategy)
            target = getattr(message, name)
            if isinstance(value, list):
                for item in value:
                    target.add().CopyFrom(item) if isinstance(item, Message) else target.append(item)
            elif isinstance(value, Message):
                target.CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return build()


@st.composite
def mutated(draw: st.DrawFn, encoded: bytes) -> bytes:
    """``encoded`` with a few bytes flipped, cut, inserted or duplicated (corrupt wire format)."""
    data = bytearray(encoded)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "truncate", "insert", "duplicate"]))
        if action == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif action == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif action == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif action == "duplicate":
            data = data + data
    return bytes(data)


def _valid_templates() -> dict[str, Message]:
    """One valid request per request type: fuzzing one field of these reaches past the first check."""
    from sagascope.api.admin.v1 import admin_pb2 as a
    from sagascope.api.identity.v1 import identity_pb2 as i
    from sagascope.api.orders.v1 import orders_pb2 as o
    from sagascope.api.payments.v1 import payments_pb2 as p

    item = o.OrderItem(sku="SKU-1", quantity=1, unit_price_minor=1999)
    return {
        m.DESCRIPTOR.full_name: m
        for m in (
            i.LoginRequest(username="alice", password="not-alices-password"),
            i.GetJwksRequest(),
            p.ProcessPaymentRequest(order_id="fz-1", amount_minor=1999, currency="EUR", idempotency_key="fz-c1"),
            p.RefundPaymentRequest(payment_id="fz-none", idempotency_key="fz-r1", reason="fuzz"),
            p.GetPaymentRequest(payment_id="fz-none"),
            o.CreateOrderRequest(customer_id="alice", currency="EUR", idempotency_key="fz-o1", items=[item]),
            o.GetOrderRequest(order_id="fz-none"),
            o.ListOrdersRequest(page_size=10),
            a.ListSagasRequest(page_size=5, filter=a.SagaFilter(status=a.SAGA_STATUS_FAILED)),
            a.GetSagaRequest(saga_id="saga_none"),
            a.RetrySagaRequest(saga_id="saga_none", note="fuzz"),
            a.PauseSagaRequest(saga_id="saga_none"),
            a.ResumeSagaRequest(saga_id="saga_none"),
            a.ResolveSagaRequest(saga_id="saga_none", note="fuzz"),
            a.RetrySagasRequest(rate_per_second=50, limit=5),
            a.ResumeSagasRequest(rate_per_second=50, limit=5),
        )
    }


@st.composite
def near_valid(draw: st.DrawFn, descriptor: Descriptor) -> Message:
    """The valid template with up to two top-level fields replaced by generated values."""
    template = _valid_templates().get(descriptor.full_name)
    message = message_class(descriptor.full_name)()
    if template is not None:
        message.CopyFrom(template)
    generated = draw(messages(descriptor))
    names = [f.name for f in descriptor.fields]
    if names:
        for name in draw(st.lists(st.sampled_from(names), min_size=0, max_size=2, unique=True)):
            message.ClearField(name)
            if _is_composite(descriptor, name):
                getattr(message, name).MergeFrom(getattr(generated, name))
            else:  # the generated value, or the zero value when it left the field unset
                setattr(message, name, getattr(generated, name))
    return message


def _is_composite(descriptor: Descriptor, name: str) -> bool:
    field = descriptor.fields_by_name[name]
    return field.is_repeated or field.type == FieldDescriptor.TYPE_MESSAGE


def request_bytes(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Near-valid requests, generated messages, their mutations, and raw bytes."""
    encoded = messages(descriptor).map(lambda m: m.SerializeToString())
    close = near_valid(descriptor).map(lambda m: m.SerializeToString())
    return st.one_of(close, encoded, close.flatmap(mutated), st.binary(max_size=80))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=8,
)


@st.composite
def login_bodies(draw: st.DrawFn) -> bytes:
    """Bodies for POST /auth/login: plausible objects, any JSON, nesting bombs, surrogates, raw bytes."""
    kind = draw(st.sampled_from(["object", "json", "nested", "surrogate", "raw"]))
    if kind == "object":
        body: dict[str, Any] = {}
        for key in ("username", "password"):
            if draw(st.booleans()):
                body[key] = draw(st.one_of(text, json_values))
        return json.dumps(body).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "nested":
        depth = draw(st.integers(500, 6000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return (opener * depth + "1" + closer * depth).encode()
    if kind == "surrogate":
        cut = draw(st.sampled_from(["\\ud800", "\\udfff", "\\ud83d", "\\u0000"]))
        return f'{{"username": "alice", "password": "pw{cut}"}}'.encode()
    return draw(st.binary(max_size=200))
