"""What the trace and log views share: read from a source, print it, or say why not."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TextIO, TypeVar

T = TypeVar("T")


def print_view(
    load: Callable[[], Sequence[T]],
    render: Callable[[Sequence[T]], str],
    *,
    what: str,
    source: str,
    nothing: str,
    out: TextIO,
) -> int:
    """0 when something was printed, 1 when the source had nothing (``nothing`` on stderr),
    2 when the source could not be read."""
    try:
        rows = load()
    except OSError as exc:
        print(f"could not read {what} from {source}: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print(f"{nothing} in {source}", file=sys.stderr)
        return 1
    print(render(rows), file=out)
    return 0
