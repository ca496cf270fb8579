"""`dydx-exporter [run]`: parse the settings, set up logging, serve until SIGINT or SIGTERM, exit 0.

Exit status: 0 after a clean shutdown (or --help/--version), 2 for a bad flag, environment variable,
config value or web config file (the message names it; all are read and checked by Settings.from_sources
before anything starts) or a --chain.rpc-url node on another network than the indexer's, 1 when the
exporter cannot start (for example the port is taken).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from exporter import logs
from exporter.config import Settings
from exporter.lifecycle import StopSignals
from exporter.logs import get_logger
from exporter.options import parse_command_line

log = get_logger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    settings = parse_command_line("dydx-exporter", lambda: Settings.from_sources(args, os.environ))
    if isinstance(settings, int):
        return settings
    logs.configure(settings.log_level, settings.log_format)  # type: ignore[arg-type]
    try:
        return asyncio.run(serve(settings))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130


async def serve(settings: Settings) -> int:
    from exporter.feed.heads import ChainNetworkMismatch
    from exporter.service import Exporter

    with StopSignals() as signals:
        try:
            exporter = Exporter(settings)
        except ValueError as exc:
            print(f"dydx-exporter: error: {exc}", file=sys.stderr)
            return 2
        try:
            await exporter.start()
        except ChainNetworkMismatch as exc:  # a configuration error found by asking the node
            print(f"dydx-exporter: error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            log.error("exporter_start_failed", error=str(exc))
            return 1
        await signals.wait()
        log.info("shutdown_requested", signal=signals.first)
        await exporter.stop()
        return 0
