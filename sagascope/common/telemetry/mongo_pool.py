"""PyMongo's connection-pool events, counted for ``db_client_connections_checked_out{pool="pymongo"}``.

Its own module so that only the payment service (the one with a MongoDB client) imports PyMongo.
"""

from __future__ import annotations

from pymongo import monitoring


class MongoCheckoutCounter(monitoring.ConnectionPoolListener):
    """PyMongo's pool events, folded into one number: connections checked out minus checked in.

    Pass it to the client (``event_listeners=[counter]``); a pool cleared or closed while
    connections are out still checks each of them in, so the count returns to zero.
    """

    def __init__(self) -> None:
        self.checked_out = 0

    def connection_checked_out(self, event: monitoring.ConnectionCheckedOutEvent) -> None:
        self.checked_out += 1

    def connection_checked_in(self, event: monitoring.ConnectionCheckedInEvent) -> None:
        self.checked_out -= 1

    # The rest of the interface: nothing to count.
    def pool_created(self, event: monitoring.PoolCreatedEvent) -> None: ...
    def pool_ready(self, event: monitoring.PoolReadyEvent) -> None: ...
    def pool_cleared(self, event: monitoring.PoolClearedEvent) -> None: ...
    def pool_closed(self, event: monitoring.PoolClosedEvent) -> None: ...
    def connection_created(self, event: monitoring.ConnectionCreatedEvent) -> None: ...
    def connection_ready(self, event: monitoring.ConnectionReadyEvent) -> None: ...
    def connection_closed(self, event: monitoring.ConnectionClosedEvent) -> None: ...
    def connection_check_out_started(self, event: monitoring.ConnectionCheckOutStartedEvent) -> None: ...
    def connection_check_out_failed(self, event: monitoring.ConnectionCheckOutFailedEvent) -> None: ...
