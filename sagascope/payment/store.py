"""Payments in MongoDB (PyMongo's async API): one flat document per payment, ``_id`` a uuid4 hex string.

The unique index on ``idempotency_key`` is the idempotency guarantee: two
concurrent charges with one key cannot both insert, and the loser re-reads the
winner's document. Refunds are one conditional ``find_one_and_update`` (filter
on ``status: CHARGED``) so a refund can never apply twice.

Differences from real MongoDB seen with nx-27017 (the embedded, SQLite-backed
server used by ``make demo`` and the integration tests) — this module avoids
each one, so it behaves the same on both:

- ``$set`` of a ``datetime`` stores a naive string (``"2026-01-02 03:04:05.678000"``),
  not a BSON date. Updates therefore set ``updated_at`` with ``$currentDate``,
  which stores a real date; datetimes are only written by ``insert_one``.
  :func:`_as_utc` still accepts such strings, should one ever be read.
- ``$push`` of a subdocument stores it as a JSON string: documents here have no
  arrays of subdocuments.
- ``index_information()`` reports our unique index as
  ``idx_<collection>_<field>``, not the name given to ``create_index``; nothing
  here relies on index names.
- A unique index lets several documents *without* the field coexist (MongoDB
  treats a missing field as ``null`` and rejects the second); every payment has
  an ``idempotency_key``, so this never matters here.
- ``find_one_and_replace`` moves ``_id`` to the end of the returned document
  (cosmetic; not used here).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from sagascope.common.urls import redact_url
from sagascope.payment.domain import Payment, PaymentStatus

log = logging.getLogger(__name__)

COLLECTION = "payments"
IDEMPOTENCY_INDEX = "idempotency_key_unique"


class MongoUnavailable(RuntimeError):
    """MongoDB did not answer within the start-up budget."""


Document = dict[str, Any]
MongoClient = AsyncMongoClient[Document]


def connect(url: str, *, server_selection_timeout_ms: int = 5000) -> MongoClient:
    """A client that decodes dates as aware UTC datetimes (the driver connects lazily, on first use)."""
    return AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=server_selection_timeout_ms)


async def wait_until_reachable(client: MongoClient, url: str, timeout_seconds: float) -> None:
    """Ping until MongoDB answers; after ``timeout_seconds`` raise :class:`MongoUnavailable`."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout_seconds
    attempt = 0
    while True:
        attempt += 1
        try:
            await client.admin.command("ping")
            return
        except PyMongoError as exc:
            if loop.time() >= deadline:
                raise MongoUnavailable(
                    f"MongoDB at {redact_url(url)} (PAYMENT_MONGO_URL) did not answer in "
                    f"{loop.time() - started:.1f}s ({attempt} attempt(s), budget "
                    f"PAYMENT_MONGO_CONNECT_TIMEOUT_SECONDS={timeout_seconds:g}): {exc}"
                ) from exc
            log.warning("MongoDB at %s not reachable yet (attempt %d): %s", redact_url(url), attempt, exc)
            await asyncio.sleep(min(1.0, max(0.0, deadline - loop.time())))


def _as_utc(value: Any) -> datetime:
    if isinstance(value, str):  # nx-27017 stores a $set datetime as a string (see above)
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_document(payment: Payment) -> dict[str, Any]:
    return {
        "_id": payment.id,
        "order_id": payment.order_id,
        "amount_minor": payment.amount_minor,
        "currency": payment.currency,
        "status": payment.status.value,
        "idempotency_key": payment.idempotency_key,
        "decline_reason": payment.decline_reason,
        "refund_reason": payment.refund_reason,
        "refund_idempotency_key": payment.refund_idempotency_key,
        "created_at": payment.created_at,
        "updated_at": payment.updated_at,
    }


def from_document(document: Mapping[str, Any]) -> Payment:
    return Payment(
        id=str(document["_id"]),
        order_id=document.get("order_id") or "",
        amount_minor=int(document.get("amount_minor") or 0),
        currency=document.get("currency") or "",
        status=PaymentStatus(document["status"]),
        idempotency_key=document["idempotency_key"],
        created_at=_as_utc(document["created_at"]),
        updated_at=_as_utc(document["updated_at"]),
        decline_reason=document.get("decline_reason") or "",
        refund_reason=document.get("refund_reason") or "",
        refund_idempotency_key=document.get("refund_idempotency_key") or "",
    )


class PaymentStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

    @classmethod
    def for_database(cls, client: MongoClient, database: str) -> PaymentStore:
        return cls(client[database][COLLECTION])

    async def ensure_indexes(self) -> None:
        """Idempotent; run at start-up before the service reports SERVING."""
        await self._collection.create_index("idempotency_key", unique=True, name=IDEMPOTENCY_INDEX)

    async def get(self, payment_id: str) -> Payment | None:
        document = await self._collection.find_one({"_id": payment_id})
        return from_document(document) if document else None

    async def find_by_idempotency_key(self, key: str) -> Payment | None:
        document = await self._collection.find_one({"idempotency_key": key})
        return from_document(document) if document else None

    async def insert_or_get(self, payment: Payment) -> Payment:
        """Insert ``payment``; if its idempotency key is taken, return the payment holding it.

        The caller compares ids to learn whether it won.
        """
        try:
            await self._collection.insert_one(to_document(payment))
            return payment
        except DuplicateKeyError:
            existing = await self.find_by_idempotency_key(payment.idempotency_key)
            if existing is None:  # the clash was on _id, not the key: a uuid4 collision
                raise
            return existing

    async def mark_refunded(
        self, payment_id: str, reason: str, refund_idempotency_key: str
    ) -> Payment | None:
        """CHARGED -> REFUNDED atomically; None when the payment is not (or no longer) CHARGED."""
        document = await self._collection.find_one_and_update(
            {"_id": payment_id, "status": PaymentStatus.CHARGED.value},
            {
                "$set": {
                    "status": PaymentStatus.REFUNDED.value,
                    "refund_reason": reason,
                    "refund_idempotency_key": refund_idempotency_key,
                },
                # $currentDate, not $set: nx-27017 would store a $set datetime as a string.
                "$currentDate": {"updated_at": True},
            },
            return_document=ReturnDocument.AFTER,
        )
        return from_document(document) if document else None
