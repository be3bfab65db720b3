"""Payments in MongoDB (PyMongo's async API): one flat document per payment, ``_id`` a uuid4 hex string.

The unique index on ``idempotency_key`` is the idempotency guarantee: two
concurrent charges with one key cannot both insert, and the loser re-reads the
winner's document. A refund is decided the same way: by inserting a claim keyed
by the payment id into ``payment_refund_claims`` (see :meth:`PaymentStore.mark_refunded`),
so a refund can never apply twice — an insert against a unique key is the one
write every MongoDB-wire server we run on makes atomic.

Differences from real MongoDB seen with nx-27017 (the embedded, SQLite-backed
server used by ``make demo`` and the integration tests) — this module avoids
each one, so it behaves the same on both:

- ``$set`` of a ``datetime`` stores a naive string (``"2026-01-02 03:04:05.678000"``),
  not a BSON date. A refund sets ``updated_at`` to its claim's time that way (every
  write of one refund must be the same write), so on nx-27017 a refunded payment's
  ``updated_at`` is such a string; :func:`_as_utc` reads it back as UTC.
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

And with FerretDB v1 (PostgreSQL backend; docs/testing.md, "A second MongoDB-wire
server"): a conditional update (``find_one_and_update``, ``update_one``) reads the
matching documents, then writes each back by ``_id`` without checking the filter
again, so concurrent updates with the same filter all succeed, the last writer
winning. Refunds therefore do not rely on the filter ``status: CHARGED`` alone
(:meth:`PaymentStore.mark_refunded`).

Every store operation runs to its end even when its caller is cancelled (:func:`driver_operation`).
On Python 3.11 a task cancelled twice while PyMongo waits for a server (``asyncio.wait_for`` around
its topology condition) leaves wait_for before the condition has taken the topology lock back: the
``async with`` then fails ("Lock is not acquired") and the lock stays held by a task that has ended,
so every later operation of that client waits forever. gRPC cancels a handler when its caller's
deadline passes, and under load that happened twice: the chaos campaign's seed 42 at 24 in flight
wedged payment for good (benchmarks/chaos/FINDINGS.md §6). This is CPython's python/cpython#86766
(a Condition waited on through ``wait_for``); Python 3.12's ``wait_for`` has no inner task and
cannot do it. The service image runs 3.12, this machine and CI 3.11. A caller that gives
up gets its CancelledError at once; the driver's operation finishes in the background, bounded by
``socketTimeoutMS`` and the server selection timeout, and a write's effect is what an idempotent
retry reads back (as after any lost reply).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError
from pymongo.monitoring import ConnectionPoolListener

from sagascope.common.urls import redact_url
from sagascope.payment.domain import Payment, PaymentStatus

log = logging.getLogger(__name__)

COLLECTION = "payments"
REFUND_CLAIMS = "payment_refund_claims"  # one document per refunded payment, ``_id`` = the payment's id
IDEMPOTENCY_INDEX = "idempotency_key_unique"


class MongoUnavailable(RuntimeError):
    """MongoDB did not answer within the start-up budget."""


Document = dict[str, Any]
MongoClient = AsyncMongoClient[Document]
P = ParamSpec("P")
T = TypeVar("T")


def _retrieve(task: asyncio.Task[Any]) -> None:
    """An operation nobody awaits any more: read its outcome so asyncio does not warn about it."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("MongoDB operation finished after its caller gave up: %r", task.exception())


def driver_operation(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Run ``method`` in a task of its own, shielded from its caller's cancellation (see the module's
    doc: a twice-cancelled PyMongo call can wedge the client on Python 3.11)."""

    @functools.wraps(method)
    async def shielded(*args: P.args, **kwargs: P.kwargs) -> T:
        task = asyncio.ensure_future(method(*args, **kwargs))
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    return shielded


def connect(
    url: str,
    *,
    server_selection_timeout_ms: int = 5000,
    max_idle_ms: int | None = None,
    socket_timeout_ms: int | None = None,
    event_listeners: Sequence[ConnectionPoolListener] = (),
) -> MongoClient:
    """A client that decodes dates as aware UTC datetimes (the driver connects lazily, on first use);
    ``max_idle_ms`` closes pooled connections idle that long (None: PyMongo's default, never);
    ``socket_timeout_ms`` bounds one round trip (None: PyMongo's default, no bound)."""
    return AsyncMongoClient(
        url, tz_aware=True, serverSelectionTimeoutMS=server_selection_timeout_ms, maxIdleTimeMS=max_idle_ms,
        socketTimeoutMS=socket_timeout_ms, event_listeners=list(event_listeners),
    )


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
    def __init__(self, collection: AsyncCollection[Document], refund_claims: AsyncCollection[Document]) -> None:
        self._collection = collection
        self._claims = refund_claims

    @classmethod
    def for_database(cls, client: MongoClient, database: str) -> PaymentStore:
        return cls(client[database][COLLECTION], client[database][REFUND_CLAIMS])

    async def ensure_indexes(self) -> None:
        """Idempotent; run at start-up before the service reports SERVING."""
        await self._collection.create_index("idempotency_key", unique=True, name=IDEMPOTENCY_INDEX)

    @driver_operation
    async def get(self, payment_id: str) -> Payment | None:
        document = await self._collection.find_one({"_id": payment_id})
        return from_document(document) if document else None

    @driver_operation
    async def find_by_idempotency_key(self, key: str) -> Payment | None:
        document = await self._collection.find_one({"idempotency_key": key})
        return from_document(document) if document else None

    @driver_operation
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

    @driver_operation
    async def mark_refunded(
        self, payment_id: str, reason: str, refund_idempotency_key: str
    ) -> Payment | None:
        """CHARGED -> REFUNDED once; None when the payment is not (or no longer) CHARGED.

        The first refund to insert the claim (``_id`` = the payment id) decides the refund's key,
        reason and time; every refund then writes exactly those values (the winner, a concurrent
        loser, or a later one finishing a refund whose claimant died or was cancelled between its
        claim and its update). On FerretDB v1 several of those writes may land (its conditional
        update is not atomic; see the module docstring), but they are the same write, so the
        payment is refunded once and every caller sees the same payment. Nobody waits for anybody:
        a waiting loser would outlive its caller's deadline, and a claimant cancelled by that
        deadline would leave every later refund waiting for it.
        """
        now = datetime.now(UTC)
        claim = {
            "_id": payment_id,
            "refund_idempotency_key": refund_idempotency_key,
            "refund_reason": reason,
            # BSON keeps milliseconds: the winner writes what a loser will read back from the claim.
            "at": now.replace(microsecond=now.microsecond // 1000 * 1000),
        }
        try:
            await self._claims.insert_one(claim)
        except DuplicateKeyError:
            claim = await self._claims.find_one({"_id": payment_id}) or claim
        document = await self._collection.find_one_and_update(
            {"_id": payment_id, "status": PaymentStatus.CHARGED.value},
            {
                "$set": {
                    "status": PaymentStatus.REFUNDED.value,
                    "refund_reason": claim["refund_reason"],
                    "refund_idempotency_key": claim["refund_idempotency_key"],
                    # The claim's time, not $currentDate: every write of this refund is the same
                    # write (nx-27017 stores this $set datetime as a string; _as_utc reads it).
                    "updated_at": claim.get("at") or now,
                },
            },
            return_document=ReturnDocument.AFTER,
        )
        return from_document(document) if document else None
