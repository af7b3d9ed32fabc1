"""``python -m resil <command>``; the one command so far is ``demo``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m resil demo [--seed N] [--every N] [--metrics-port PORT [--hold S]]")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "demo":
        from resil import demo

        return demo.main(rest)
    print(f"python -m resil: unknown command {command!r} (try: demo)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly
        sys.stderr.close()
        sys.exit(0)
