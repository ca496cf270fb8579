"""Command line: `dydx-exporter [COMMAND] [flags]`; without a command it runs the exporter.

Each subcommand owns its flags in its own module; this only dispatches, and answers `--help` and
`help [COMMAND]` with the list of commands.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Final


def _run(argv: list[str]) -> int:
    from exporter.run import main

    return main(argv)


def _simulate(argv: list[str]) -> int:
    from exporter.simulator.cli import main

    return main(argv)


def _record(argv: list[str]) -> int:
    from exporter.simulator.recorder import record_main

    return record_main(argv)


def _top(argv: list[str]) -> int:
    from exporter.top.app import main

    return main(argv)


def _help(argv: list[str]) -> int:
    if not argv:
        return _help_run()
    name = argv[0]
    if name not in COMMANDS or name == "help":
        print(
            f"dydx-exporter help: unknown command {name!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr
        )
        return 2
    if name == "run":
        return _help_run()
    return COMMANDS[name][1](["--help"])  # argparse's SystemExit becomes main()'s status


def _help_run() -> int:
    """The command list, then the exporter's own flags (it is the default command)."""
    from exporter.config import build_parser

    print(usage())
    print(build_parser().format_help(), end="")
    return 0


#: name → (one line for the help, entry point). Imports stay lazy: a command loads only its own modules.
COMMANDS: Final[dict[str, tuple[str, Callable[[list[str]], int]]]] = {
    "run": ("the exporter (the default command): dYdX v4 indexer feed → Prometheus /metrics", _run),
    "simulate": ("the embedded dYdX v4 indexer simulator (WebSocket, REST, faults, control API)", _simulate),
    "record": ("record a live feed to a file that `simulate --replay` plays back", _record),
    "top": ("a live terminal view of a running exporter (throughput, latency, errors, markets)", _top),
    "help": ("this list, or `help COMMAND` for the flags of one command", _help),
}
HELP_FLAGS: Final = ("-h", "--help")


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: dydx-exporter [COMMAND] [flags]",
        "",
        "Prometheus exporter for the dYdX v4 Indexer WebSocket feed, with an embedded indexer simulator.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {summary}" for name, (summary, _) in COMMANDS.items()),
        "",
        "`dydx-exporter COMMAND --help` (or `dydx-exporter help COMMAND`) lists the flags of one command.",
        "Without a command, dydx-exporter runs the exporter; its flags follow.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """The exit status of the command (argparse's --help and usage errors included, as statuses)."""
    args = list(sys.argv[1:] if argv is None else argv)
    name = args.pop(0) if args and args[0] in COMMANDS else "run"
    if name == "run" and any(arg in HELP_FLAGS for arg in args):
        return _help_run()
    try:
        return COMMANDS[name][1](args)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 0 if done.code is None else 1
