"""OrderService over gRPC: validate, call the order book, map rows to messages."""

from __future__ import annotations

import grpc

from sagascope.api.orders.v1 import orders_pb2, orders_pb2_grpc
from sagascope.common import correlation
from sagascope.common.auth import caller
from sagascope.common.errors import InvalidArgument
from sagascope.common.money import MAX_AMOUNT_MINOR
from sagascope.common.timestamps import to_timestamp
from sagascope.common.validation import require_amount, require_currency, require_id, require_range
from sagascope.order.orders import NewOrder, OrderBook
from sagascope.order.repository import Item, OrderRow

SERVICE_NAME = orders_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name
METHOD_ROLES = {
    f"/{SERVICE_NAME}/CreateOrder": "orders.write",
    f"/{SERVICE_NAME}/GetOrder": "orders.read",
    f"/{SERVICE_NAME}/ListOrders": "orders.read",
}
MAX_ITEMS = 100
MAX_QUANTITY = 10_000
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 100

_STATUS_TO_PROTO = {
    "PENDING": orders_pb2.ORDER_STATUS_PENDING,
    "COMPLETED": orders_pb2.ORDER_STATUS_COMPLETED,
    "CANCELLED": orders_pb2.ORDER_STATUS_CANCELLED,
    "FAILED": orders_pb2.ORDER_STATUS_FAILED,
}
_PROTO_TO_STATUS = {v: k for k, v in _STATUS_TO_PROTO.items()}


def parse_new_order(request: orders_pb2.CreateOrderRequest) -> NewOrder:
    require_id(request.customer_id, "customer_id")
    require_currency(request.currency)
    require_id(request.idempotency_key, "idempotency_key")
    if not request.items:
        raise InvalidArgument("items", "at least one item is required")
    if len(request.items) > MAX_ITEMS:
        raise InvalidArgument("items", f"at most {MAX_ITEMS} items per order, got {len(request.items)}")
    items = []
    for i, item in enumerate(request.items):
        require_id(item.sku, f"items[{i}].sku", max_length=64)
        require_range(item.quantity, f"items[{i}].quantity", 1, MAX_QUANTITY)
        require_amount(item.unit_price_minor, f"items[{i}].unit_price_minor")
        items.append(Item(item.sku, item.quantity, item.unit_price_minor))
    order = NewOrder(request.customer_id, tuple(items), request.currency, request.idempotency_key)
    if order.total_minor > MAX_AMOUNT_MINOR:
        raise InvalidArgument(
            "items", f"the order total {order.total_minor} exceeds {MAX_AMOUNT_MINOR} minor units"
        )
    return order


def to_proto(row: OrderRow) -> orders_pb2.Order:
    return orders_pb2.Order(
        id=row.id,
        customer_id=row.customer_id,
        currency=row.currency,
        total_minor=row.total_minor,
        status=_STATUS_TO_PROTO[row.status],
        payment_id=row.payment_id,
        failure_reason=row.failure_reason,
        correlation_id=row.correlation_id,
        idempotency_key=row.idempotency_key,
        saga_id=row.saga_id,
        created_at=to_timestamp(row.created_at),
        updated_at=to_timestamp(row.updated_at),
        items=[
            orders_pb2.OrderItem(sku=i.sku, quantity=i.quantity, unit_price_minor=i.unit_price_minor)
            for i in row.items
        ],
    )


class OrderServicer(orders_pb2_grpc.OrderServiceServicer):
    def __init__(self, book: OrderBook) -> None:
        self.book = book

    async def CreateOrder(
        self, request: orders_pb2.CreateOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.CreateOrderResponse:
        order = parse_new_order(request)
        row = await self.book.place(order, caller(), correlation.current() or correlation.new_id())
        return orders_pb2.CreateOrderResponse(order=to_proto(row))

    async def GetOrder(
        self, request: orders_pb2.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.GetOrderResponse:
        require_id(request.order_id, "order_id")
        return orders_pb2.GetOrderResponse(order=to_proto(await self.book.get(request.order_id, caller())))

    async def ListOrders(
        self, request: orders_pb2.ListOrdersRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.ListOrdersResponse:
        page_size = request.page_size or DEFAULT_PAGE_SIZE
        require_range(page_size, "page_size", 1, MAX_PAGE_SIZE)
        if request.status not in (orders_pb2.ORDER_STATUS_UNSPECIFIED, *_PROTO_TO_STATUS):
            raise InvalidArgument("status", f"unknown order status {request.status}")
        if len(request.page_token) > 512:
            raise InvalidArgument("page_token", "is not a token returned by ListOrders")
        rows, next_token = await self.book.list(
            caller(), _PROTO_TO_STATUS.get(request.status), page_size, request.page_token
        )
        return orders_pb2.ListOrdersResponse(orders=[to_proto(r) for r in rows], next_page_token=next_token)
