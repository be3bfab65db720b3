"""``python -m sagascope.order``: read the settings, run the order service until SIGTERM/SIGINT."""

from __future__ import annotations

from sagascope.common.config import ConfigError
from sagascope.common.runtime import run
from sagascope.order.server import serve
from sagascope.order.settings import OrderSettings


def main() -> None:
    try:
        settings = OrderSettings.from_env()
    except ConfigError as exc:
        raise SystemExit(f"order-service: configuration error: {exc}") from None
    run(serve(settings))


if __name__ == "__main__":
    main()
