"""``python -m resil <command> [options]``: the commands that come with resil."""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Callable
from types import ModuleType


_ABOUT = """\
resil is a resilience toolkit for asyncio and threaded Python services:
circuit breakers, retries with backoff and deadlines, timeouts, dedup,
bounded queues, an event emitter, an event bus with dead letters, a SQLite
store and monitoring with Prometheus exposition. Its state machines are
written in C. It is a library you import (see the README); these commands
show it at work and map how your own sources use an event bus."""


def _demo() -> ModuleType:
    from resil.cli import demo

    return demo


def _analyze() -> ModuleType:
    from resil.cli import analyze

    return analyze


def _shared() -> ModuleType:
    from resil.cli import shared

    return shared


# name -> the module holding its SUMMARY, build_parser() and main(argv).
_COMMANDS: dict[str, Callable[[], ModuleType]] = {"demo": _demo, "shared": _shared,
                                                  "analyze": _analyze}


def usage() -> str:
    """The text of ``python -m resil --help``: what resil is, and each
    command with its one-line description and its options."""
    lines = ["usage: python -m resil <command> [options]", "", _ABOUT, "", "commands:"]
    for name, load in _COMMANDS.items():
        module = load()
        lines.append(textwrap.fill(module.SUMMARY, 79, initial_indent=f"  {name:<8}",
                                   subsequent_indent=" " * 10))
        # The command's own usage line, less its name and -h: its options,
        # wrapped between options, never inside one.
        parser = module.build_parser()
        rest = " ".join(parser.format_usage().split(parser.prog, 1)[1].split())
        line = " " * 10 + "options:"
        for option in re.findall(r"\[[^\]]*\]|\S+", rest):
            if option == "[-h]":
                continue
            if len(line) + 1 + len(option) > 79:
                lines.append(line)
                line = " " * 18
            line += " " + option
        lines.append(line)
    lines += ["", "Each command describes its options: python -m resil <command> --help",
              "(for example: python -m resil demo --help)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs ``python -m resil`` with ``argv`` (default: ``sys.argv[1:]``);
    returns the exit status: 0, or 2 for a missing or unknown command."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(usage(), file=sys.stderr)
        return 2
    if args[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = args[0], args[1:]
    load = _COMMANDS.get(command)
    if load is None:
        print(f"python -m resil: unknown command {command!r} (commands: "
              f"{', '.join(_COMMANDS)}; python -m resil --help says more)", file=sys.stderr)
        return 2
    result: int = load().main(rest)
    return result


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly
        sys.stderr.close()
        sys.exit(0)
