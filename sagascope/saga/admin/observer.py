"""The seam between the admin operations and telemetry, like the executor's SagaObserver.

The operations report every change here; :mod:`sagascope.saga.admin.telemetry` turns it into a
span linked to the saga's trace, a ``saga.admin.<action>`` log event and the
``saga_admin_actions_total{action}`` counter. :class:`NoopAdminObserver` is used in tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class AdminAction:
    action: str
    saga_id: str
    saga_name: str
    # The operator's token subject.
    actor: str
    note: str
    # The saga's own correlation id (the operator's request has its own, in the log context).
    saga_correlation_id: str
    # W3C traceparent of the run that started the saga: the action's span links to it.
    origin_traceparent: str


class ActionScope(Protocol):
    def applied(self, from_status: str, to_status: str) -> None: ...

    def refused(self, reason: str) -> None: ...


class AdminObserver(Protocol):
    def action(self, action: AdminAction) -> AbstractContextManager[ActionScope]: ...


class _NoopScope:
    def applied(self, from_status: str, to_status: str) -> None:
        pass

    def refused(self, reason: str) -> None:
        pass


class NoopAdminObserver:
    @contextmanager
    def action(self, action: AdminAction) -> Iterator[ActionScope]:
        yield _NoopScope()
