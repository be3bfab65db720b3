"""``python -m sagascope.payment``: read the settings, run the payment service until SIGTERM/SIGINT."""

from __future__ import annotations

from sagascope.common.entrypoint import service_main
from sagascope.payment.server import serve
from sagascope.payment.settings import PaymentSettings
from sagascope.payment.store import MongoUnavailable


def main() -> None:
    service_main("payment-service", PaymentSettings, serve, startup_errors=(MongoUnavailable,))


if __name__ == "__main__":
    main()
