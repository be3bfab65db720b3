"""``python -m sagascope.identity.hash_password``: print a scrypt hash for a users file entry.

The password is read without echo (twice, to catch typos), or from the first
line of stdin with ``--stdin``; never from the command line, where ``ps`` and
shell history would keep it.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from sagascope.identity.passwords import DEFAULT_N, DEFAULT_P, DEFAULT_R, hash_password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sagascope.identity.hash_password", description=__doc__)
    parser.add_argument("--stdin", action="store_true", help="read the password from the first line of stdin")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="scrypt CPU/memory cost (power of two)")
    parser.add_argument("--r", type=int, default=DEFAULT_R, help="scrypt block size")
    parser.add_argument("--p", type=int, default=DEFAULT_P, help="scrypt parallelism")
    args = parser.parse_args(argv)
    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("passwords differ", file=sys.stderr)
            return 1
    if not password:
        print("empty password refused", file=sys.stderr)
        return 1
    print(hash_password(password, n=args.n, r=args.r, p=args.p))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
