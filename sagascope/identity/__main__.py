"""``python -m sagascope.identity``: read settings from the environment and serve."""

from __future__ import annotations

import sys

from sagascope.common.config import ConfigError
from sagascope.common.runtime import run
from sagascope.identity.server import serve
from sagascope.identity.settings import IdentitySettings


def main() -> None:
    try:
        settings = IdentitySettings.from_env()
        run(serve(settings))
    except ConfigError as exc:
        print(f"identity-service: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
