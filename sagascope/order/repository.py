"""SQL for orders: what the saga steps write and what the read RPCs query."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sagascope.common.errors import InvalidArgument
from sagascope.order.tables import order_items, orders
from sagascope.saga.definition import Claim, Write


@dataclass(frozen=True)
class Item:
    sku: str
    quantity: int
    unit_price_minor: int


@dataclass(frozen=True)
class OrderRow:
    id: str
    customer_id: str
    currency: str
    total_minor: int
    status: str
    payment_id: str
    failure_reason: str
    correlation_id: str
    idempotency_key: str
    request_hash: str
    saga_id: str
    created_at: datetime
    updated_at: datetime
    items: tuple[Item, ...]


def now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything is written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_BY_ID = orders.c.id == bindparam("order_id_")
_BY_KEY = and_(orders.c.customer_id == bindparam("customer_id_"), orders.c.idempotency_key == bindparam("key_"))
# The saga's writes, built once with bind parameters (the executor composes and compiles them once).
_INSERT_ITEM = insert(order_items).values({c.name: bindparam(f"{c.name}_") for c in order_items.columns})
_SET_STATUS = (
    update(orders)
    .where(orders.c.id == bindparam("order_id_"))
    .values(
        status=bindparam("status_"),
        payment_id=bindparam("payment_id_"),
        failure_reason=bindparam("failure_reason_"),
        updated_at=bindparam("updated_at_"),
    )
)


def insert_order(row: OrderRow) -> list[Write | Claim]:
    """The order (the saga's claim on its idempotency key) and its items."""
    claim = Claim(
        orders,
        {
            "id": row.id,
            "customer_id": row.customer_id,
            "currency": row.currency,
            "total_minor": row.total_minor,
            "status": row.status,
            "payment_id": row.payment_id,
            "failure_reason": row.failure_reason,
            "correlation_id": row.correlation_id,
            "idempotency_key": row.idempotency_key,
            "request_hash": row.request_hash,
            "saga_id": row.saga_id,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        },
        unique_on=("customer_id", "idempotency_key"),
    )
    items: list[Write | Claim] = [
        Write(
            _INSERT_ITEM,
            {
                "order_id_": row.id,
                "line_": i,
                "sku_": it.sku,
                "quantity_": it.quantity,
                "unit_price_minor_": it.unit_price_minor,
            },
        )
        for i, it in enumerate(row.items)
    ]
    return [claim, *items]


def set_status(order_id: str, status: str, *, payment_id: str = "", failure_reason: str = "") -> Write:
    return Write(
        _SET_STATUS,
        {
            "order_id_": order_id,
            "status_": status,
            "payment_id_": payment_id,
            "failure_reason_": failure_reason[:2000],
            "updated_at_": now(),
        },
    )


class OrderReader:
    """The read side. Its queries run outside a transaction (autocommit): each is one statement
    (an order's items are written with it in one transaction and never change, so reading them
    in a second statement is consistent), and BEGIN/ROLLBACK around them would be two extra
    round trips for every CreateOrder's idempotency check."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def get(self, order_id: str) -> OrderRow | None:
        rows = await self._load(_BY_ID, limit=1, params={"order_id_": order_id})
        return rows[0] if rows else None

    async def find_by_key(self, customer_id: str, idempotency_key: str) -> OrderRow | None:
        rows = await self._load(_BY_KEY, limit=1, params={"customer_id_": customer_id, "key_": idempotency_key})
        return rows[0] if rows else None

    async def page(
        self, customer_id: str | None, status: str | None, page_size: int, page_token: str
    ) -> tuple[list[OrderRow], str]:
        """Newest first, keyset-paginated on (created_at, id) so pages stay stable under inserts."""
        conditions = []
        if customer_id is not None:
            conditions.append(orders.c.customer_id == customer_id)
        if status is not None:
            conditions.append(orders.c.status == status)
        if page_token:
            created_at, last_id = decode_page_token(page_token)
            conditions.append(
                or_(
                    orders.c.created_at < created_at,
                    and_(orders.c.created_at == created_at, orders.c.id < last_id),
                )
            )
        rows = await self._load(and_(*conditions) if conditions else None, limit=page_size + 1)
        if len(rows) > page_size:
            last = rows[page_size - 1]
            return rows[:page_size], encode_page_token(last.created_at, last.id)
        return rows, ""

    async def _load(self, where, limit: int, params: dict[str, object] | None = None) -> list[OrderRow]:  # type: ignore[no-untyped-def]
        query = select(orders)
        if where is not None:
            query = query.where(where)
        query = query.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit)
        async with self.engine.connect() as connection:
            order_rows = (await connection.execute(query, params or {})).all()
            if not order_rows:
                return []
            ids = [r.id for r in order_rows]
            item_rows = (
                await connection.execute(
                    select(order_items).where(order_items.c.order_id.in_(ids)).order_by(order_items.c.line)
                )
            ).all()
        items: dict[str, list[Item]] = {}
        for it in item_rows:
            items.setdefault(it.order_id, []).append(Item(it.sku, it.quantity, it.unit_price_minor))
        return [
            OrderRow(
                id=r.id,
                customer_id=r.customer_id,
                currency=r.currency,
                total_minor=r.total_minor,
                status=r.status,
                payment_id=r.payment_id,
                failure_reason=r.failure_reason,
                correlation_id=r.correlation_id,
                idempotency_key=r.idempotency_key,
                request_hash=r.request_hash,
                saga_id=r.saga_id,
                created_at=_aware(r.created_at),
                updated_at=_aware(r.updated_at),
                items=tuple(items.get(r.id, ())),
            )
            for r in order_rows
        ]


def encode_page_token(created_at: datetime, order_id: str) -> str:
    raw = f"{_aware(created_at).isoformat()}|{order_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        stamp, order_id = raw.split("|", 1)
        created_at = datetime.fromisoformat(stamp)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument("page_token", "is not a token returned by ListOrders") from None
    return created_at, order_id
