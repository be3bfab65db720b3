"""``python -m sagascope.identity``: read the settings, run the identity service until SIGTERM/SIGINT."""

from __future__ import annotations

from sagascope.common.entrypoint import service_main
from sagascope.identity.server import serve
from sagascope.identity.settings import IdentitySettings


def main() -> None:
    service_main("identity-service", IdentitySettings, serve)


if __name__ == "__main__":
    main()
