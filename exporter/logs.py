"""structlog set-up: JSON lines by default, a readable console renderer on a TTY or when asked.

Events are snake_case names with key-value context (`log.info("ws_connected", link="conn-0")`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Final, Literal, get_args

import structlog

LogFormat = Literal["json", "console", "auto"]
FORMATS: Final[tuple[str, ...]] = get_args(LogFormat)
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


def add_flags(parser: argparse.ArgumentParser) -> None:
    """--log.level and --log.format (dests log_level, log_format), for the subcommands' own parsers."""
    parser.add_argument("--log.level", dest="log_level", default="info", choices=sorted(LEVELS))
    parser.add_argument("--log.format", dest="log_format", default="auto", choices=FORMATS)


def configure(level: str = "info", fmt: LogFormat = "auto") -> None:
    numeric = LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.typing.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    elif fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        raise ValueError(f"log format must be json or console, not {fmt!r}")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A lazy logger carrying `module=name`, safe to create at import time.

    It is assembled on first use, so `configure()` called later (by the CLI) still applies. Binding on
    structlog's proxy would assemble it at once, freezing whatever configuration was current then.
    """
    # Not `logger=`: that keyword is wrap_logger's own first parameter.
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(module=name)
    return logger
