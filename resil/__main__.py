"""``python -m resil <command>``; the one command so far is ``demo``."""

from __future__ import annotations

import sys


_USAGE = """\
usage: python -m resil <command> [options]

resil: resilience for asyncio and threaded Python, with a C engine.

commands:
  demo    a dependency through a circuit breaker (healthy, flaky, outage,
          slow, recovered), then events through an emitter, a bus and a
          dead-letter queue, on a virtual clock; ends with the monitor's
          dashboard. Options: --seed N, --every N (a timeline row every N
          requests), --metrics-port PORT (serve Prometheus metrics on
          127.0.0.1 while it runs and after), --hold S (stop serving after
          S seconds instead of at Ctrl-C). `python -m resil demo --help`
          says more.

The library itself is imported, not run: see the README for the API."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE, file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "demo":
        from resil.cli import demo

        return demo.main(rest)
    print(f"python -m resil: unknown command {command!r} (try: demo)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly
        sys.stderr.close()
        sys.exit(0)
