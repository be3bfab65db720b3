"""``python -m services.order``: run the order service until SIGTERM/SIGINT."""

import asyncio

from services.order.server import serve
from services.order.settings import OrderSettings


def main() -> None:
    asyncio.run(serve(OrderSettings.from_env()))


if __name__ == "__main__":
    main()
