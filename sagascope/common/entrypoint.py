"""The one ``python -m sagascope.<service>`` entry point: ``--help``, settings, run, clear exits.

Each service's ``__main__`` names its settings class and its ``serve`` coroutine; this module
gives all three the same behaviour: ``--help`` prints the service's environment variables (the
table in its settings module's docstring) without starting anything, a configuration error
exits 2 with one line naming the variable, and a start-up failure the service declares
(e.g. its database never answered) exits 1 with its message instead of a traceback.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from sagascope.common.config import ConfigError
from sagascope.common.runtime import run


def service_main(
    service: str,
    settings: Any,
    serve: Callable[[Any], Coroutine[Any, Any, None]],
    *,
    startup_errors: tuple[type[Exception], ...] = (),
    argv: Sequence[str] | None = None,
) -> None:
    """Parse ``argv`` (only ``--help``), read ``settings.from_env()`` and run ``serve(settings)``."""
    module = sys.modules.get(settings.__module__)
    parser = argparse.ArgumentParser(
        prog=f"python -m sagascope.{service.removesuffix('-service')}",
        description=f"Run the sagascope {service} until SIGTERM or SIGINT (then drain and stop). "
        "Every setting is an environment variable:",
        epilog=inspect.cleandoc(module.__doc__ or "") if module else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    try:
        loaded = settings.from_env()
    except ConfigError as exc:
        print(f"{service}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        run(serve(loaded))
    except startup_errors as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
