"""Saga operations: list, show, retry, pause, resume and resolve sagas in the saga log.

:mod:`.operations` works on the saga log (every change one guarded write with its audit row),
:mod:`.observer` is its telemetry seam (implemented in :mod:`.telemetry`), and :mod:`.servicer`
serves it as ``sagascope.admin.v1.SagaAdminService`` (the order service hosts it).
"""
