"""`python -m tools.k8s_cluster up|down|status|env|leftovers` (and `daemon`, which `up` starts)."""

from __future__ import annotations

import argparse
import sys

from tools.k8s_cluster import cluster, teardown
from tools.k8s_cluster.layout import Layout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.k8s_cluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "env", "leftovers", "daemon"])
    args = parser.parse_args(argv)
    layout = Layout.default()
    if args.command == "env":
        print("\n".join(layout.env_lines()))
        return 0
    if args.command == "leftovers":
        left = teardown.leftovers(layout)
        print("\n".join(left) if left else "nothing")
        return 1 if left else 0
    commands = {"up": cluster.up, "down": cluster.down, "status": cluster.status, "daemon": cluster.daemon}
    return commands[args.command](layout)


if __name__ == "__main__":
    sys.exit(main())
