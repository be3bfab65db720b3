"""``python -m sagascope.payment``: read the settings, run the payment service until SIGTERM/SIGINT."""

from __future__ import annotations

from sagascope.common.config import ConfigError
from sagascope.common.runtime import run
from sagascope.payment.server import serve
from sagascope.payment.settings import PaymentSettings
from sagascope.payment.store import MongoUnavailable


def main() -> None:
    try:
        settings = PaymentSettings.from_env()
    except ConfigError as exc:
        raise SystemExit(f"payment-service: configuration error: {exc}") from None
    try:
        run(serve(settings))
    except MongoUnavailable as exc:
        raise SystemExit(f"payment-service: {exc}") from None


if __name__ == "__main__":
    main()
