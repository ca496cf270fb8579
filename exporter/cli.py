"""Command line: `dydx-exporter [run|simulate|record] [flags]`.

Each subcommand owns its flags in its own module; this only dispatches.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

SUBCOMMANDS = ("run", "simulate", "record")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = "run"
    if args and args[0] in SUBCOMMANDS:
        command = args.pop(0)
    if command == "simulate":
        from exporter.simulator.cli import main as simulate_main

        return simulate_main(args)
    if command == "record":
        from exporter.simulator.capture import record_main

        return record_main(args)
    from exporter.run import main as run_main

    return run_main(args)
