"""``python -m services.order``: read the settings, run the order service until SIGTERM/SIGINT."""

from __future__ import annotations

from services.common.config import ConfigError
from services.common.runtime import run
from services.order.server import serve
from services.order.settings import OrderSettings


def main() -> None:
    try:
        settings = OrderSettings.from_env()
    except ConfigError as exc:
        raise SystemExit(f"order-service: configuration error: {exc}") from None
    run(serve(settings))


if __name__ == "__main__":
    main()
