"""``python -m sagascope.order``: read the settings, run the order service until SIGTERM/SIGINT."""

from __future__ import annotations

from sagascope.common.entrypoint import service_main
from sagascope.order.server import serve
from sagascope.order.settings import OrderSettings


def main() -> None:
    service_main("order-service", OrderSettings, serve)


if __name__ == "__main__":
    main()
