"""Settings: typed, validated in one place. Flags beat environment beat the YAML file beat defaults.

Every option is declared once in OPTIONS. Its flag is Prometheus style (`--web.listen-address`), its
environment variable is `DYDX_EXPORTER_` + the flag upper-cased with `.` and `-` turned into `_`, and its
key in the `--config.file` YAML mapping is the flag without the dashes. A bad value raises ConfigError
naming the option and where the value came from; `exporter.run.main` turns it into exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from exporter import logs
from exporter.protocol import channels as ch

ENV_PREFIX = "DYDX_EXPORTER_"

NETWORKS: Mapping[str, tuple[str, str]] = {
    "mainnet": ("wss://indexer.dydx.trade/v4/ws", "https://indexer.dydx.trade"),
    "testnet": ("wss://indexer.v4testnet.dydx.exchange/v4/ws", "https://indexer.v4testnet.dydx.exchange"),
}
DEFAULT_CHANNELS = (ch.MARKETS, ch.TRADES, ch.ORDERBOOK, ch.BLOCK_HEIGHT)
#: Channels --channels accepts (v4_subaccounts comes with --subaccounts, which names the accounts).
SUPPORTED_CHANNELS = (ch.MARKETS, ch.TRADES, ch.ORDERBOOK, ch.CANDLES, ch.BLOCK_HEIGHT)
#: Channels keyed by an account, not a market; v4_subaccounts is enabled by --subaccounts.
_ACCOUNT_CHANNELS = frozenset({ch.SUBACCOUNTS, ch.PARENT_SUBACCOUNTS})
LOG_LEVELS = tuple(logs.LEVELS)
LOG_FORMATS = logs.FORMATS


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


def parse_positive_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a positive integer, not {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"expected a positive integer, not {value!r}") from None
    if number <= 0:
        raise ValueError(f"expected a positive integer, not {value!r}")
    return number


def parse_positive_float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a positive number, not {value!r}")
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f"expected a positive number, not {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise ValueError(f"expected a positive number, not {value!r}")
    return number


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


def parse_shard(value: object) -> tuple[int, int]:
    """`I/N` with 0 <= I < N → (I, N)."""
    text = parse_str(value)
    m = re.fullmatch(r"(\d+)/(\d+)", text)
    if not m:
        raise ValueError(f"expected I/N such as 0/2, not {text!r}")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or index >= count:
        raise ValueError(f"shard index must be in 0..N-1 and N >= 1, not {text!r}")
    return index, count


def shard_of(ticker: str, shard_count: int) -> int:
    """Stable across processes, versions and platforms (crc32, unlike hash())."""
    return zlib.crc32(ticker.encode()) % shard_count


# --- the option table -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    flag: str  # without the leading dashes
    default: object
    help: str
    is_bool: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + re.sub(r"[.-]", "_", self.flag).upper()


OPTIONS: tuple[Option, ...] = (
    Option("config.file", "", "YAML file of options (keys are the flag names); flags and env win over it"),
    Option("web.listen-address", ":9741", "address to serve /metrics, /healthz and /readyz on"),
    Option("web.telemetry-path", "/metrics", "path of the metrics endpoint"),
    Option("web.config.file", "", "exporter-toolkit web config (TLS, basic auth)"),
    Option("dydx.network", "mainnet", "indexer network: mainnet or testnet (sets the default URLs)"),
    Option("dydx.ws-url", "", "full WebSocket URL (default from --dydx.network)"),
    Option("dydx.rest-url", "", "REST base URL, without /v4 (default from --dydx.network)"),
    Option("markets", "all", "'all' or a comma-separated list of tickers"),
    Option("channels", ",".join(DEFAULT_CHANNELS), "comma-separated channels to subscribe"),
    Option(
        "candles.resolutions", "", "candle resolutions to subscribe (enables v4_candles), e.g. 1MIN,5MINS"
    ),
    Option(
        "subaccounts",
        "",
        "comma-separated subaccounts ADDRESS/N (dydx1.../0) to subscribe on v4_subaccounts (off when empty)",
    ),
    Option(
        "subaccounts.refresh-interval",
        "1m",
        "re-snapshot each subscribed subaccount this often (equity and free collateral come only in "
        "snapshots); 0 = never",
    ),
    Option("shard", "0/1", "I/N: this replica exports the markets whose crc32(ticker) % N == I"),
    Option("feed.batched", False, "subscribe with batched: true (server flushes every 250 ms)", True),
    Option("feed.backoff-initial", "1s", "first reconnect/retry backoff (full jitter)"),
    Option("feed.backoff-max", "60s", "reconnect/retry backoff cap"),
    Option("feed.stable-after", "30s", "a link up this long resets its backoff"),
    Option("feed.handshake-timeout", "10s", "WebSocket handshake and first-frame timeout"),
    Option(
        "feed.ping-interval", "15s", "interval of the exporter's own pings (for dydx_ws_ping_rtt_seconds)"
    ),
    Option("feed.ping-timeout", "40s", "a link with no server ping for this long is dead"),
    Option(
        "feed.silence-timeout",
        "30s",
        "a link whose v4_block_height or v4_markets is silent this long is dead",
    ),
    Option("feed.subscribe-rate", "40", "global subscribe messages per second across all links"),
    Option("feed.subscribe-timeout", "30s", "a subscribe without an answer for this long is retried"),
    Option("feed.resubscribe-delay", "5s", "delay before retrying a subscribe whose snapshot fetch failed"),
    Option(
        "feed.subscribe-retries", "5", "attempts for a rejected market before giving up until rediscovery"
    ),
    Option("feed.max-subscriptions", "32", "subscriptions per channel per link (the server's cap is 32)"),
    Option(
        "feed.max-frame-bytes",
        "16777216",
        "frames larger than this are counted as invalid and dropped; twice this closes the link",
    ),
    Option("discovery.interval", "5m", "period of the REST /v4/perpetualMarkets refresh"),
    Option("discovery.timeout", "10s", "timeout of one REST request"),
    Option(
        "orderbook.crossed-resync-after",
        "30s",
        "resubscribe a market's order book that stayed crossed (as delivered) this long; 0 = never",
    ),
    Option(
        "orderbook.resync-interval",
        "0",
        "re-snapshot every order book this often (e.g. 1h), staggered and paced; 0 = never",
    ),
    Option("data.stale-after", "30s", "data older than this makes /readyz fail"),
    Option("data.message-id-grace", "10s", "a message id still missing after this long counts as a gap"),
    Option("shutdown.timeout", "5s", "upper bound of a clean shutdown"),
    Option("log.level", "info", "debug, info, warn or error"),
    Option("log.format", "auto", "json, console, or auto (console on a TTY, json otherwise)"),
)
OPTIONS_BY_FLAG = {o.flag: o for o in OPTIONS}


# --- the settings -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """What the connections, the pool and discovery need."""

    ws_url: str
    rest_url: str
    batched: bool = False
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    stable_after: float = 30.0
    handshake_timeout: float = 10.0
    ping_interval: float = 15.0
    ping_timeout: float = ch.CLIENT_PING_DEADLINE_S
    silence_timeout: float = 30.0
    subscribe_rate: float = 40.0
    subscribe_timeout: float = 30.0
    resubscribe_delay: float = 5.0
    subscribe_retries: int = 5
    max_subscriptions: int = 32
    max_frame_bytes: int = 16 * 1024 * 1024
    discovery_interval: float = 300.0
    discovery_timeout: float = 10.0


class _HasURLs(Protocol):
    @property
    def ws_url(self) -> str: ...

    @property
    def base_url(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Settings:
    feed: FeedSettings
    listen_host: str = ""
    listen_port: int = 9741
    telemetry_path: str = "/metrics"
    web_config_file: str = ""
    network: str = "mainnet"
    markets: tuple[str, ...] | None = None  # None: every market
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    candle_resolutions: tuple[str, ...] = ()
    #: "ADDRESS/N" ids for v4_subaccounts; when non-empty, channels carries v4_subaccounts too.
    subaccounts: tuple[str, ...] = ()
    subaccount_refresh_interval: float = 60.0
    crossed_resync_after: float = 30.0
    resync_interval: float = 0.0
    shard_index: int = 0
    shard_count: int = 1
    stale_after: float = 30.0
    message_id_grace: float = 10.0
    shutdown_timeout: float = 5.0
    log_level: str = "info"
    log_format: str = "auto"
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)  # flag → flag|env|file|default

    def wants_market(self, ticker: str) -> bool:
        """--markets and --shard filters."""
        if self.markets is not None and ticker not in self.markets:
            return False
        return self.shard_count == 1 or shard_of(ticker, self.shard_count) == self.shard_index

    @property
    def market_channels(self) -> tuple[str, ...]:
        """Channels subscribed once per market (with the ticker, or ticker/resolution, as id)."""
        return tuple(
            c for c in self.channels if c not in ch.CHANNELS_WITHOUT_ID and c not in _ACCOUNT_CHANNELS
        )

    @classmethod
    def from_sources(cls, argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
        """Flags, then DYDX_EXPORTER_* env, then --config.file, then defaults. Raises ConfigError."""
        flags = _parse_flags(argv)
        raw: dict[str, tuple[object, str]] = {}
        config_file = flags.get("config.file") or environ.get(OPTIONS_BY_FLAG["config.file"].env, "")
        file_values = _load_file(str(config_file)) if config_file else {}
        for opt in OPTIONS:
            if opt.flag in flags:
                raw[opt.flag] = (flags[opt.flag], f"flag --{opt.flag}")
            elif opt.env in environ:
                raw[opt.flag] = (environ[opt.env], f"environment {opt.env}")
            elif opt.flag in file_values:
                raw[opt.flag] = (file_values[opt.flag], f"{config_file}: {opt.flag}")
            else:
                raw[opt.flag] = (opt.default, f"default of --{opt.flag}")
        return _build(raw)

    @classmethod
    def for_simulator(cls, sim: _HasURLs, **overrides: Any) -> Settings:
        """Loopback settings with short timings for tests against an in-process Simulator.

        Overrides are Settings fields, or FeedSettings fields (which are applied to `feed`).
        """
        feed_fields = {f.name for f in dataclasses.fields(FeedSettings)}
        feed_overrides = {k: overrides.pop(k) for k in list(overrides) if k in feed_fields}
        feed = FeedSettings(
            ws_url=sim.ws_url,
            rest_url=sim.base_url,
            backoff_initial=0.05,
            backoff_max=0.5,
            stable_after=1.0,
            handshake_timeout=2.0,
            ping_interval=0.5,
            ping_timeout=10.0,
            silence_timeout=3.0,
            subscribe_rate=500.0,
            subscribe_timeout=5.0,
            resubscribe_delay=0.2,
            subscribe_retries=3,
            discovery_interval=30.0,
            discovery_timeout=2.0,
        )
        feed = dataclasses.replace(feed, **feed_overrides)
        settings = cls(
            feed=feed,
            listen_host="127.0.0.1",
            listen_port=0,
            stale_after=5.0,
            message_id_grace=1.0,
            log_format="json",
        )
        settings = _with_implied_channels(dataclasses.replace(settings, **overrides))
        _validate(settings, {})
        return settings


# --- parsing and validation -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit(2) with usage; the caller decides
        raise ConfigError(message)


def _argparse_escape(text: str) -> str:
    """Option help is plain text (the README table shows it as is); argparse formats help with %."""
    return text.replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    from exporter import __version__

    parser = _Parser(
        prog="dydx-exporter",
        description="Prometheus exporter for the dYdX v4 Indexer WebSocket feed. Every flag can also be "
        "set by DYDX_EXPORTER_<FLAG> (e.g. DYDX_EXPORTER_WEB_LISTEN_ADDRESS) or in --config.file.",
        allow_abbrev=False,
    )
    for opt in OPTIONS:
        if opt.is_bool:
            parser.add_argument(
                f"--{opt.flag}",
                dest=opt.flag,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=f"{_argparse_escape(opt.help)} (env {opt.env})",
            )
        else:
            parser.add_argument(
                f"--{opt.flag}",
                dest=opt.flag,
                default=argparse.SUPPRESS,
                metavar="VALUE",
                help=f"{_argparse_escape(opt.help)} (default {opt.default!r}; env {opt.env})",
            )
    parser.add_argument("--version", action="version", version=f"dydx-exporter {__version__}")
    return parser


def _parse_flags(argv: Sequence[str]) -> dict[str, object]:
    return dict(vars(build_parser().parse_args(list(argv))))


def _load_file(path: str) -> dict[str, object]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"--config.file: cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config.file: {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config.file: {path} must hold a mapping of flag names to values")
    unknown = sorted(str(k) for k in data if str(k) not in OPTIONS_BY_FLAG or k == "config.file")
    if unknown:
        raise ConfigError(f"--config.file: {path}: unknown option(s) {', '.join(unknown)}")
    return {str(k): v for k, v in data.items()}


def _build(raw: Mapping[str, tuple[object, str]]) -> Settings:
    def get(flag: str, parse: Callable[[object], Any]) -> Any:
        value, source = raw[flag]
        try:
            return parse(value)
        except ValueError as exc:
            raise ConfigError(f"--{flag}: {exc} (from {source})") from None

    network = get("dydx.network", parse_str)
    if network not in NETWORKS:
        raise ConfigError(f"--dydx.network: must be one of {', '.join(NETWORKS)}, not {network!r}")
    default_ws, default_rest = NETWORKS[network]
    host, port = get("web.listen-address", parse_listen_address)
    markets = get("markets", parse_markets)
    shard_index, shard_count = get("shard", parse_shard)
    resolutions = get("candles.resolutions", parse_list)
    channels = list(get("channels", parse_list))
    if resolutions and ch.CANDLES not in channels:
        channels.append(ch.CANDLES)
    subaccounts = get("subaccounts", parse_list)
    feed = FeedSettings(
        ws_url=get("dydx.ws-url", parse_str) or default_ws,
        rest_url=(get("dydx.rest-url", parse_str) or default_rest).rstrip("/"),
        batched=get("feed.batched", parse_bool),
        backoff_initial=get("feed.backoff-initial", parse_positive_duration),
        backoff_max=get("feed.backoff-max", parse_positive_duration),
        stable_after=get("feed.stable-after", parse_duration),
        handshake_timeout=get("feed.handshake-timeout", parse_positive_duration),
        ping_interval=get("feed.ping-interval", parse_positive_duration),
        ping_timeout=get("feed.ping-timeout", parse_positive_duration),
        silence_timeout=get("feed.silence-timeout", parse_positive_duration),
        subscribe_rate=get("feed.subscribe-rate", parse_positive_float),
        subscribe_timeout=get("feed.subscribe-timeout", parse_positive_duration),
        resubscribe_delay=get("feed.resubscribe-delay", parse_duration),
        subscribe_retries=get("feed.subscribe-retries", parse_positive_int),
        max_subscriptions=get("feed.max-subscriptions", parse_positive_int),
        max_frame_bytes=get("feed.max-frame-bytes", parse_positive_int),
        discovery_interval=get("discovery.interval", parse_positive_duration),
        discovery_timeout=get("discovery.timeout", parse_positive_duration),
    )
    settings = Settings(
        feed=feed,
        listen_host=host,
        listen_port=port,
        telemetry_path=get("web.telemetry-path", parse_str),
        web_config_file=get("web.config.file", parse_str),
        network=network,
        markets=markets,
        channels=tuple(channels),
        candle_resolutions=resolutions,
        subaccounts=subaccounts,
        subaccount_refresh_interval=get("subaccounts.refresh-interval", parse_duration),
        crossed_resync_after=get("orderbook.crossed-resync-after", parse_duration),
        resync_interval=get("orderbook.resync-interval", parse_duration),
        shard_index=shard_index,
        shard_count=shard_count,
        stale_after=get("data.stale-after", parse_positive_duration),
        message_id_grace=get("data.message-id-grace", parse_positive_duration),
        shutdown_timeout=get("shutdown.timeout", parse_positive_duration),
        log_level=get("log.level", parse_str).lower(),
        log_format=get("log.format", parse_str).lower(),
        sources={flag: source for flag, (_, source) in raw.items()},
    )
    settings = _with_implied_channels(settings)
    _validate(settings, raw)
    return settings


def _with_implied_channels(s: Settings) -> Settings:
    """--subaccounts implies v4_subaccounts (as --candles.resolutions implies v4_candles)."""
    if s.subaccounts and ch.SUBACCOUNTS not in s.channels:
        return dataclasses.replace(s, channels=(*s.channels, ch.SUBACCOUNTS))
    return s


def parse_subaccount(value: str) -> str:
    """`ADDRESS/N` with a dydx1 bech32 address and 0 <= N < 128000; returns it unchanged."""
    address, sep, number = value.rpartition("/")
    if not sep or not ch.ADDRESS_RE.match(address):
        raise ValueError(f"{value!r} is not ADDRESS/N with a dydx1... address, such as dydx1.../0")
    if not number.isdigit() or int(number) >= ch.MAX_SUBACCOUNT_NUMBER:
        raise ValueError(f"subaccount number of {value!r} must be 0..{ch.MAX_SUBACCOUNT_NUMBER - 1}")
    return value


def _validate(s: Settings, raw: Mapping[str, tuple[object, str]]) -> None:
    """Cross-field checks. `raw` (may be empty) only serves to name where a value came from."""

    def fail(flag: str, message: str) -> None:
        source = raw.get(flag, (None, ""))[1]
        raise ConfigError(f"--{flag}: {message}" + (f" (from {source})" if source else ""))

    if not s.telemetry_path.startswith("/") or s.telemetry_path in ("/", "/healthz", "/readyz"):
        fail("web.telemetry-path", f"must be a path such as /metrics, not {s.telemetry_path!r}")
    if s.web_config_file and not Path(s.web_config_file).is_file():
        fail("web.config.file", f"no such file: {s.web_config_file}")
    for flag, url, schemes in (
        ("dydx.ws-url", s.feed.ws_url, ("ws://", "wss://")),
        ("dydx.rest-url", s.feed.rest_url, ("http://", "https://")),
    ):
        if not url.startswith(schemes) or len(url) <= len(schemes[-1]):
            fail(flag, f"must start with {' or '.join(schemes)}, not {url!r}")
    if not s.channels:
        fail("channels", "at least one channel is required")
    for channel in s.channels:
        if channel == ch.SUBACCOUNTS and s.subaccounts:
            continue
        if channel == ch.SUBACCOUNTS:
            fail("channels", f"{ch.SUBACCOUNTS} needs --subaccounts (the subaccounts to subscribe)")
        if channel not in SUPPORTED_CHANNELS:
            fail("channels", f"unknown channel {channel!r}; supported: {', '.join(SUPPORTED_CHANNELS)}")
    for subaccount in s.subaccounts:
        try:
            parse_subaccount(subaccount)
        except ValueError as exc:
            fail("subaccounts", str(exc))
    for resolution in s.candle_resolutions:
        if resolution not in ch.CANDLE_RESOLUTIONS:
            fail(
                "candles.resolutions",
                f"unknown resolution {resolution!r}; supported: {', '.join(ch.CANDLE_RESOLUTIONS)}",
            )
    if ch.CANDLES in s.channels and not s.candle_resolutions:
        fail("candles.resolutions", "v4_candles is in --channels, so name at least one resolution")
    if s.markets is not None:
        try:
            check_tickers(s.markets)
        except ValueError as exc:
            fail("markets", str(exc))
    if not 0 <= s.shard_index < s.shard_count:
        fail("shard", f"index must be in 0..{s.shard_count - 1}, not {s.shard_index}")
    if s.feed.backoff_max < s.feed.backoff_initial:
        fail("feed.backoff-max", "must not be smaller than --feed.backoff-initial")
    if not 0 < s.feed.max_subscriptions <= ch.SUBSCRIPTION_CAPS[ch.TRADES]:
        fail("feed.max-subscriptions", f"must be 1..{ch.SUBSCRIPTION_CAPS[ch.TRADES]}")
    if s.log_level not in LOG_LEVELS:
        fail("log.level", f"must be one of {', '.join(LOG_LEVELS)}, not {s.log_level!r}")
    if s.log_format not in LOG_FORMATS:
        fail("log.format", f"must be one of {', '.join(LOG_FORMATS)}, not {s.log_format!r}")
