"""A saga declared as data: an ordered list of steps, each an action and an optional compensation.

Local steps return the SQL writes they want; the executor applies them together
with the saga-log write, all or nothing and only while it holds the saga's lease
(on PostgreSQL in one statement, so one round trip). Remote steps call a
participant with an idempotency key derived from the saga id and step name, so a
retry — live or after a crash — never applies twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Table
from sqlalchemy.sql.dml import UpdateBase

S = TypeVar("S")


@dataclass(frozen=True)
class Claim:
    """The row whose insertion starts a saga, e.g. an order keyed by its idempotency key.

    Only the first step may return one, as its first write. If a row with the same
    ``unique_on`` values exists already, the saga does not start and nothing is written.
    """

    table: Table
    values: Mapping[str, Any]
    # Columns of a unique constraint of ``table``.
    unique_on: tuple[str, ...]


@dataclass(frozen=True)
class Write:
    r"""An INSERT/UPDATE/DELETE (SQLAlchemy Core, values as ``bindparam()``\s, built once) and
    the values for this call. The step returns it; the executor runs it."""

    statement: UpdateBase
    params: Mapping[str, Any] = field(default_factory=dict)


# What a local step or compensation returns; the first step may start with a Claim.
Writes = Sequence[Write | Claim]


class StepFailed(Exception):
    """A business failure: the step definitely had no effect (e.g. payment declined)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CallContext:
    """What a remote step needs for one call."""

    saga_id: str
    # The key for this call (the action's, or the compensation's).
    idempotency_key: str
    # The forward action's key: a compensation uses it to undo a call whose reply was lost.
    action_key: str
    # Why the saga compensates (empty for forward actions).
    reason: str = ""


@dataclass(frozen=True)
class LocalStep(Generic[S]):
    name: str
    action: Callable[[S], Awaitable[Writes]]
    # Receives the reason the saga compensates.
    compensation: Callable[[S, str], Awaitable[Writes]] | None = None


@dataclass(frozen=True)
class RemoteStep(Generic[S]):
    name: str
    action: Callable[[S, CallContext], Awaitable[None]]
    # Must cope with "the action may never have happened": compensate by idempotency key.
    compensation: Callable[[S, CallContext], Awaitable[None]] | None = None


Step = LocalStep[S] | RemoteStep[S]


@dataclass(frozen=True)
class SagaDefinition(Generic[S]):
    name: str
    steps: Sequence[LocalStep[S] | RemoteStep[S]]
    # Persists the saga's business state (a dataclass) as JSON and back.
    encode: Callable[[S], dict[str, Any]]
    decode: Callable[[dict[str, Any]], S]
    # Business ids for telemetry, e.g. {"order.id": ...}; never secrets.
    describe: Callable[[S], dict[str, str]]
    # Writes applied with the saga-log write that marks the saga FAILED (a compensation cannot
    # finish yet); receives the reason.
    on_stuck: Callable[[S, str], Awaitable[Writes]] | None = None
    # Writes applied with the saga-log write that ends the saga by an operator's ResolveSaga
    # (sagascope/saga/admin): a person says the compensation was done outside the system;
    # receives why (who resolved it and their note).
    on_resolved: Callable[[S, str], Awaitable[Writes]] | None = None
    # The business id people look the saga up by (e.g. the order id), kept in the saga log.
    reference: Callable[[S], str] | None = None

    def __post_init__(self) -> None:
        if not self.steps or not isinstance(self.steps[0], LocalStep):
            raise ValueError(
                f"saga {self.name}: the first step must be local (it runs with the saga's creation)"
            )
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"saga {self.name}: step names must be unique, got {names}")

    def action_key(self, saga_id: str, index: int) -> str:
        return f"{saga_id}:{self.steps[index].name}"

    def compensation_key(self, saga_id: str, index: int) -> str:
        return f"{saga_id}:{self.steps[index].name}:compensate"

    def previous_compensable(self, index: int) -> int:
        """The highest step index <= ``index`` that has a compensation, or -1."""
        for i in range(index, -1, -1):
            if self.steps[i].compensation is not None:
                return i
        return -1
