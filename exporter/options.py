"""Command-line options as data: one `Option` row per option, from which a subcommand gets its argparse
flags, its environment variables and config-file keys (when it reads them), typed values and errors.

The exporter (`exporter.config`), the simulator (`exporter.simulator.cli`) and the recorder share this, so
every subcommand parses values the same way and words a bad value the same way:

    dydx-exporter: error: --feed.backoff-initial: expected a duration such as 5s or 500ms, not 'soon'
    (from environment DYDX_EXPORTER_FEED_BACKOFF_INITIAL)
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from exporter.protocol import channels as ch

ENV_PREFIX = "DYDX_EXPORTER_"


class ConfigError(ValueError):
    """A flag, environment variable or file entry is wrong; the message names it."""


# --- value parsers: str (or a native YAML value) → typed value, ValueError with a short reason ----------

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds from `1.5`, `"1.5"`, `"500ms"`, `"5m"` or `"1h30m"` (Prometheus style)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 5s or 500ms, not {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for m in _DURATION_RE.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
                pos = m.end()
            if pos != len(text) or not text:
                raise ValueError(f"expected a duration such as 5s or 500ms, not {text!r}") from None
    if seconds != seconds or seconds < 0:
        raise ValueError(f"duration must be a non-negative number, not {value!r}")
    return seconds


def parse_positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"duration must be greater than zero, not {value!r}")
    return seconds


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, not {value!r}")


N = TypeVar("N", int, float)


def _numbers(convert: Callable[[str], N], what: str, ok: Callable[[N], bool]) -> Callable[[object], N]:
    """A parser of `convert`ible numbers for which `ok` holds (never a bool, NaN or infinity)."""

    def parse(value: object) -> N:
        try:
            if isinstance(value, bool):
                raise ValueError
            number = convert(str(value).strip())
        except ValueError:
            raise ValueError(f"expected {what}, not {value!r}") from None
        if number != number or abs(number) == float("inf") or not ok(number):
            raise ValueError(f"expected {what}, not {value!r}")
        return number

    return parse


parse_int = _numbers(int, "an integer", lambda n: True)
parse_positive_int = _numbers(int, "a positive integer", lambda n: n > 0)
parse_non_negative_int = _numbers(int, "an integer >= 0", lambda n: n >= 0)
parse_positive_float = _numbers(float, "a positive number", lambda n: n > 0)
parse_non_negative_float = _numbers(float, "a number >= 0", lambda n: n >= 0)


def parse_list(value: object) -> tuple[str, ...]:
    """A comma-separated string or a YAML list → tuple of non-empty stripped items, order kept, no dups."""
    items = [str(v) for v in value] if isinstance(value, list | tuple) else str(value).split(",")
    out: list[str] = []
    for item in items:
        item = item.strip()
        if item and item not in out:
            out.append(item)
    return tuple(out)


def check_tickers(tickers: tuple[str, ...]) -> tuple[str, ...]:
    """`tickers` unchanged when each is a ticker such as BTC-USD; ValueError naming those that are not."""
    bad = [ticker for ticker in tickers if not ch.TICKER_RE.match(ticker)]
    if bad:
        raise ValueError(f"{', '.join(bad)} is not a ticker such as BTC-USD (or use 'all')")
    return tickers


def parse_markets(value: object) -> tuple[str, ...] | None:
    """`all` (or nothing) → None, every market; otherwise the listed tickers, each one checked."""
    markets = parse_list(value)
    return None if markets in ((), ("all",)) else check_tickers(markets)


def parse_str(value: object) -> str:
    if isinstance(value, list | dict):
        raise ValueError(f"expected a single value, not {value!r}")
    return "" if value is None else str(value).strip()


def parse_lower(value: object) -> str:
    return parse_str(value).lower()


def one_of(choices: Iterable[str], *, lower: bool = False) -> Callable[[object], str]:
    """A parser accepting exactly `choices` (case-folded first with `lower`)."""
    allowed = tuple(choices)

    def parse(value: object) -> str:
        text = parse_lower(value) if lower else parse_str(value)
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, not {text!r}")
        return text

    return parse


def parse_listen_address(value: object) -> tuple[str, int]:
    """`host:port`, `:port` (every interface) or `[v6]:port` → (host, port); host "" means every interface."""
    text = parse_str(value)
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"expected host:port or :port, not {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port must be a number, not {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0..65535, not {port}")
    return host, port


# --- the option rows ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    """One option. `default` is written as a user would write it (shown by --help and the README);
    `parse` turns any source's value into the typed value; `dest` names the attribute it fills (a tuple
    when the value is a tuple spread over several attributes, such as host and port)."""

    flag: str  # without the leading dashes
    default: object
    help: str
    parse: Callable[[object], Any] = parse_str
    dest: str | tuple[str, ...] = ""
    short: str = ""  # a one-letter alias (`-o`)

    @property
    def env(self) -> str:
        """Its environment variable (read by the exporter only)."""
        return ENV_PREFIX + re.sub(r"[.-]", "_", self.flag).upper()

    @property
    def is_bool(self) -> bool:
        return self.parse is parse_bool

    @property
    def value(self) -> Any:
        """The typed default."""
        return self.parse(self.default)


#: (raw value, where it came from) per flag: "flag --x", "environment X", "FILE: x" or "default of --x".
RawValues = Mapping[str, tuple[object, str]]


def config_error(flag: str, reason: str, source: str = "") -> ConfigError:
    """The one wording of a bad value: the option, the reason, and where the value came from (a value
    given as the flag itself is said to come from the command line, so the flag is named once)."""
    where = "the command line" if source.startswith("flag ") else source
    return ConfigError(f"--{flag}: {reason}" + (f" (from {where})" if where else ""))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit(2) with usage; the caller decides
        raise ConfigError(message)


def _escape(text: str) -> str:
    """Option help is plain text (the README table shows it as is); argparse formats help with %."""
    return text.replace("%", "%%")


def _shown(default: object) -> str:
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default) if default not in ("", None) else "none"


def build_parser(
    options: Sequence[Option], *, prog: str, description: str, with_env: bool
) -> argparse.ArgumentParser:
    """An argparse parser whose flags are `options` (each dest is the flag). Values stay raw strings and
    absent flags stay absent (SUPPRESS), so precedence and parsing happen in `resolve`/`parse_values`.
    Every help line states the default (and the environment variable, when `with_env`)."""
    parser = _Parser(prog=prog, description=description, allow_abbrev=False)
    for opt in options:
        # A help text that already says what the default is (or that the flag is required) is not repeated.
        says = any(words in opt.help for words in ("(default ", "by default", "; required"))
        notes = [] if says else [f"default {_shown(opt.default)}"]
        notes += [f"env {opt.env}"] if with_env else []
        where = f" ({'; '.join(notes)})" if notes else ""
        parser.add_argument(
            f"--{opt.flag}",
            *([f"-{opt.short}"] if opt.short else []),
            dest=opt.flag,
            default=argparse.SUPPRESS,
            help=f"{_escape(opt.help)}{where}",
            **({"action": argparse.BooleanOptionalAction} if opt.is_bool else {"metavar": "VALUE"}),
        )
    return parser


def parse_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> dict[str, object]:
    """The flags given in `argv`, by flag name. Raises ConfigError for an unknown flag or a missing value;
    SystemExit for --help and --version."""
    return dict(vars(parser.parse_args(list(argv))))


def parse_command(
    parser: argparse.ArgumentParser, options: Sequence[Option], argv: Sequence[str]
) -> tuple[dict[str, object], dict[str, Any]]:
    """A command read from its flags alone (no environment, no file): the flags given in `argv`, by flag
    name, and the typed values of `options` from them and the defaults. ConfigError names the flag;
    SystemExit for --help."""
    flags = parse_flags(parser, argv)
    return flags, parse_values(options, resolve(options, flags))


def resolve(
    options: Sequence[Option],
    flags: Mapping[str, object],
    environ: Mapping[str, str] | None = None,
    file_values: Mapping[str, object] | None = None,
    file_label: str = "",
) -> dict[str, tuple[object, str]]:
    """Each option's raw value and source: flag, then environment, then file, then default."""
    raw: dict[str, tuple[object, str]] = {}
    for opt in options:
        if opt.flag in flags:
            raw[opt.flag] = (flags[opt.flag], f"flag --{opt.flag}")
        elif environ is not None and opt.env in environ:
            raw[opt.flag] = (environ[opt.env], f"environment {opt.env}")
        elif file_values is not None and opt.flag in file_values:
            raw[opt.flag] = (file_values[opt.flag], f"{file_label}: {opt.flag}")
        else:
            raw[opt.flag] = (opt.default, f"default of --{opt.flag}")
    return raw


def parse_values(options: Sequence[Option], raw: RawValues) -> dict[str, Any]:
    """Typed values by dest (a tuple dest spreads the parsed tuple). Raises ConfigError naming the option
    and the source."""
    values: dict[str, Any] = {}
    for opt in options:
        value, source = raw[opt.flag]
        try:
            parsed = opt.parse(value)
        except ValueError as exc:
            raise config_error(opt.flag, str(exc), source) from None
        if isinstance(opt.dest, tuple):
            values.update(zip(opt.dest, parsed, strict=True))
        else:
            values[opt.dest or opt.flag] = parsed
    return values


T = TypeVar("T")


def parse_command_line(prog: str, build: Callable[[], T]) -> T | int:
    """`build()` (which parses the command line), or the exit status when there is nothing to run: 0 after
    --help or --version, 2 after printing `PROG: error: <what is wrong>` for a bad flag or value."""
    try:
        return build()
    except SystemExit as done:  # --help and --version
        return done.code if isinstance(done.code, int) else 0
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
