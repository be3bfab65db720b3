"""The order service's own tables (the saga log table lives in sagascope.saga.store)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

ORDER_METADATA = MetaData()

orders = Table(
    "orders",
    ORDER_METADATA,
    Column("id", String(64), primary_key=True),
    Column("customer_id", String(128), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("payment_id", String(64), nullable=False, default=""),
    Column("failure_reason", Text, nullable=False, default=""),
    Column("correlation_id", String(128), nullable=False),
    Column("idempotency_key", String(128), nullable=False),
    # sha256 of the request body: the same key with a different body is refused.
    Column("request_hash", String(64), nullable=False),
    Column("saga_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("customer_id", "idempotency_key", name="uq_orders_customer_idempotency_key"),
    Index("ix_orders_customer_created", "customer_id", "created_at"),
    Index("ix_orders_status_created", "status", "created_at"),
)

order_items = Table(
    "order_items",
    ORDER_METADATA,
    Column("order_id", String(64), ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True),
    Column("line", Integer, primary_key=True),
    Column("sku", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price_minor", BigInteger, nullable=False),
)
