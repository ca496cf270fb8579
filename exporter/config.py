"""Settings: typed, validated in one place. Flags beat environment beat the YAML file beat defaults.

Every option is one row of `exporter.flags.OPTIONS` (see exporter.options): its flag is Prometheus style
(`--web.listen-address`), its environment variable is `DYDX_EXPORTER_` + the flag upper-cased with `.` and
`-` turned into `_`, its key in the `--config.file` YAML mapping is the flag without the dashes, its parser
turns any of those into the typed value, and its `dest` names the `Settings` (or `FeedSettings`, as
`feed.NAME`) attribute it fills. The dataclasses take their defaults from the rows (`flags.default`), so a
default is written once. A bad value raises ConfigError naming the option and where the value came from;
`exporter.run.main` turns it into exit status 2. The `--web.config.file` is read and validated here too, so
a broken TLS or basic-auth file stops the exporter before anything starts, with an error that names it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from exporter import options
from exporter.flags import (
    DEFAULT_CHANNELS,
    LOG_FORMATS,
    LOG_LEVELS,
    NETWORKS,
    OPTIONS,
    OPTIONS_BY_FLAG,
    default,
    shard_of,
)
from exporter.options import (
    ConfigError,
    Option,
    RawValues,
    check_tickers,
    config_error,
    parse_duration,
    parse_flags,
    parse_list,
    parse_listen_address,
    parse_markets,
    parse_values,
    resolve,
)
from exporter.protocol import channels as ch
from exporter.web.webconfig import WebConfig, WebConfigError, read_web_config

__all__ = [
    "DEFAULT_CHANNELS",
    "NETWORKS",
    "OPTIONS",
    "OPTIONS_BY_FLAG",
    "SUPPORTED_CHANNELS",
    "ConfigError",
    "FeedSettings",
    "Option",
    "Settings",
    "check_tickers",
    "parse_duration",
    "parse_list",
    "parse_listen_address",
    "parse_markets",
    "shard_of",
]

#: Channels --channels accepts (the ChannelSpec table's `selectable` rows; v4_subaccounts comes with
#: --subaccounts, which names the accounts).
SUPPORTED_CHANNELS = ch.SELECTABLE_CHANNELS


#: Short timings for a loopback simulator, as flags: Settings.for_simulator's, and the suite's exporters'.
SIMULATOR_FLAGS: tuple[str, ...] = (
    "--feed.backoff-initial=50ms",
    "--feed.backoff-max=500ms",
    "--feed.stable-after=1s",
    "--feed.handshake-timeout=2s",
    "--feed.ping-interval=500ms",
    "--feed.ping-timeout=10s",
    "--feed.silence-timeout=3s",
    "--feed.subscribe-rate=500",
    "--feed.subscribe-timeout=5s",
    "--feed.resubscribe-delay=200ms",
    "--feed.subscribe-retries=3",
    "--discovery.interval=30s",
    "--discovery.timeout=2s",
    "--data.stale-after=5s",
    "--data.message-id-grace=1s",
    "--log.format=json",
)


# --- the settings -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """What the connections, the pool and discovery need."""

    ws_url: str
    rest_url: str
    batched: bool = default("feed.batched")
    compression: bool = default("feed.compression")
    backoff_initial: float = default("feed.backoff_initial")
    backoff_max: float = default("feed.backoff_max")
    stable_after: float = default("feed.stable_after")
    handshake_timeout: float = default("feed.handshake_timeout")
    ping_interval: float = default("feed.ping_interval")
    ping_timeout: float = default("feed.ping_timeout")
    silence_timeout: float = default("feed.silence_timeout")
    subscribe_rate: float = default("feed.subscribe_rate")
    subscribe_timeout: float = default("feed.subscribe_timeout")
    resubscribe_delay: float = default("feed.resubscribe_delay")
    subscribe_retries: int = default("feed.subscribe_retries")
    max_subscriptions: int = default("feed.max_subscriptions")
    max_frame_bytes: int = default("feed.max_frame_bytes")
    discovery_interval: float = default("feed.discovery_interval")
    discovery_timeout: float = default("feed.discovery_timeout")


class _HasURLs(Protocol):
    @property
    def ws_url(self) -> str: ...

    @property
    def base_url(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Settings:
    feed: FeedSettings
    listen_host: str = default("listen_host")
    listen_port: int = default("listen_port")
    telemetry_path: str = default("telemetry_path")
    web_config_file: str = default("web_config_file")
    network: str = default("network")
    markets: tuple[str, ...] | None = default("markets")  # None: every market
    channels: tuple[str, ...] = default("channels")
    candle_resolutions: tuple[str, ...] = default("candle_resolutions")
    #: "ADDRESS/N" ids for v4_subaccounts; when non-empty, channels carries v4_subaccounts too.
    subaccounts: tuple[str, ...] = default("subaccounts")
    subaccount_refresh_interval: float = default("subaccount_refresh_interval")
    chain_rpc_urls: tuple[str, ...] = default("chain_rpc_urls")
    chain_poll_interval: float = default("chain_poll_interval")
    rest_height_interval: float = default("rest_height_interval")
    crossed_resync_after: float = default("crossed_resync_after")
    resync_interval: float = default("resync_interval")
    audit_interval: float = default("audit_interval")
    audit_window: float = default("audit_window")
    shard_index: int = default("shard_index")
    shard_count: int = default("shard_count")
    stale_after: float = default("stale_after")
    message_id_grace: float = default("message_id_grace")
    shutdown_timeout: float = default("shutdown_timeout")
    log_level: str = default("log_level")
    log_format: str = default("log_format")
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)  # flag → flag|env|file|default
    #: The parsed --web.config.file (TLS, basic auth); None without one.
    web_config: WebConfig | None = field(default=None, compare=False)

    def wants_market(self, ticker: str) -> bool:
        """--markets and --shard filters."""
        if self.markets is not None and ticker not in self.markets:
            return False
        return self.shard_count == 1 or shard_of(ticker, self.shard_count) == self.shard_index

    @property
    def market_channels(self) -> tuple[str, ...]:
        """Channels subscribed once per market (with the ticker, or ticker/resolution, as id)."""
        return tuple(c for c in self.channels if c in ch.CHANNELS and ch.CHANNELS[c].scope == "market")

    @classmethod
    def from_sources(cls, argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
        """Flags, then DYDX_EXPORTER_* env, then --config.file, then defaults. Raises ConfigError."""
        flags = parse_flags(build_parser(), argv)
        config_file = flags.get("config.file") or environ.get(OPTIONS_BY_FLAG["config.file"].env, "")
        file_values = _load_file(str(config_file)) if config_file else {}
        return from_raw(resolve(OPTIONS, flags, environ, file_values, str(config_file)))

    @classmethod
    def for_simulator(cls, sim: _HasURLs, **overrides: Any) -> Settings:
        """Loopback settings with short timings for tests against an in-process Simulator, parsed from
        flags as the CLI parses them.

        Overrides are Settings fields, or FeedSettings fields (which are applied to `feed`).
        """
        argv = [
            "--web.listen-address=127.0.0.1:0",
            f"--dydx.ws-url={sim.ws_url}",
            f"--dydx.rest-url={sim.base_url}",
            *SIMULATOR_FLAGS,
            # REST's head every second: simulated blocks come fast, and block thresholds are not scaled.
            "--rest.height-interval=1s",
        ]
        settings = cls.from_sources(argv, {})
        feed_fields = {f.name for f in dataclasses.fields(FeedSettings)}
        feed_overrides = {k: overrides.pop(k) for k in list(overrides) if k in feed_fields}
        feed = dataclasses.replace(settings.feed, **feed_overrides)
        return _finish(dataclasses.replace(settings, feed=feed, **overrides), {})


# --- parsing and validation -------------------------------------------------------------------------------


def build_parser() -> Any:
    from exporter import __version__

    parser = options.build_parser(
        OPTIONS,
        prog="dydx-exporter",
        description="Prometheus exporter for the dYdX v4 Indexer WebSocket feed. Every flag can also be "
        "set by DYDX_EXPORTER_<FLAG> (e.g. DYDX_EXPORTER_WEB_LISTEN_ADDRESS) or in --config.file.",
        with_env=True,
    )
    parser.add_argument("--version", action="version", version=f"dydx-exporter {__version__}")
    return parser


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


def from_raw(raw: RawValues) -> Settings:
    """Settings from each option's raw value and source (see exporter.options.resolve); ConfigError."""
    values = parse_values(OPTIONS, raw)
    values.pop("config.file")
    feed = {k.removeprefix("feed."): values.pop(k) for k in list(values) if k.startswith("feed.")}
    default_ws, default_rest = NETWORKS[values["network"]]
    feed["ws_url"] = feed["ws_url"] or default_ws
    feed["rest_url"] = feed["rest_url"] or default_rest
    settings = Settings(
        feed=FeedSettings(**feed),
        sources={flag: source for flag, (_, source) in raw.items()},
        **values,
    )
    return _finish(settings, raw)


def _finish(s: Settings, raw: RawValues) -> Settings:
    """Implied channels, cross-field checks, then the web config file read and validated."""
    s = _with_implied_channels(s)
    _validate(s, raw)
    if s.web_config_file and s.web_config is None:
        try:
            web_config = read_web_config(s.web_config_file)
        except WebConfigError as exc:
            raise _fail(raw, "web.config.file", str(exc)) from None
        s = dataclasses.replace(s, web_config=web_config)
    return s


def _with_implied_channels(s: Settings) -> Settings:
    """--candles.resolutions implies v4_candles, --subaccounts implies v4_subaccounts."""
    implied = [
        channel
        for channel, wanted in ((ch.CANDLES, s.candle_resolutions), (ch.SUBACCOUNTS, s.subaccounts))
        if wanted and channel not in s.channels
    ]
    return dataclasses.replace(s, channels=(*s.channels, *implied)) if implied else s


def parse_subaccount(value: str) -> str:
    """`ADDRESS/N` with a dydx1 bech32 address and 0 <= N < 128000; returns it unchanged."""
    address, sep, number = value.rpartition("/")
    if not sep or not ch.ADDRESS_RE.match(address):
        raise ValueError(f"{value!r} is not ADDRESS/N with a dydx1... address, such as dydx1.../0")
    if not number.isdigit() or int(number) >= ch.MAX_SUBACCOUNT_NUMBER:
        raise ValueError(f"subaccount number of {value!r} must be 0..{ch.MAX_SUBACCOUNT_NUMBER - 1}")
    return value


def _fail(raw: RawValues, flag: str, message: str) -> ConfigError:
    return config_error(flag, message, raw.get(flag, (None, ""))[1])


def _validate(s: Settings, raw: RawValues) -> None:
    """Cross-field checks. `raw` (may be empty) only serves to name where a value came from."""

    def fail(flag: str, message: str) -> None:
        raise _fail(raw, flag, message)

    if not s.telemetry_path.startswith("/") or s.telemetry_path in ("/", "/healthz", "/readyz"):
        fail("web.telemetry-path", f"must be a path such as /metrics, not {s.telemetry_path!r}")
    for flag, url, schemes in (
        ("dydx.ws-url", s.feed.ws_url, ("ws://", "wss://")),
        ("dydx.rest-url", s.feed.rest_url, ("http://", "https://")),
        *(("chain.rpc-url", url, ("http://", "https://")) for url in s.chain_rpc_urls),
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
