"""The exporter's options, one row each (see exporter.options): flag, default as a user writes it, help,
parser and the `Settings` attribute it fills (`feed.NAME` for `FeedSettings`). `exporter.config` builds the
flags, environment variables, config-file keys and `Settings` (whose defaults are `default(dest)`) from it.
Adding an option is one row here and one field in `Settings` or `FeedSettings`.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from typing import Any

from exporter import logs
from exporter.options import (
    Option,
    one_of,
    parse_bool,
    parse_duration,
    parse_list,
    parse_listen_address,
    parse_markets,
    parse_positive_duration,
    parse_positive_float,
    parse_positive_int,
    parse_str,
)
from exporter.protocol import channels as ch

NETWORKS: Mapping[str, tuple[str, str]] = {
    "mainnet": ("wss://indexer.dydx.trade/v4/ws", "https://indexer.dydx.trade"),
    "testnet": ("wss://indexer.v4testnet.dydx.exchange/v4/ws", "https://indexer.v4testnet.dydx.exchange"),
}
DEFAULT_CHANNELS = ch.DEFAULT_CHANNELS
LOG_LEVELS = tuple(logs.LEVELS)
LOG_FORMATS = logs.FORMATS


def parse_shard(value: object) -> tuple[int, int]:
    """`I/N` with 0 <= I < N → (I, N)."""
    text = parse_str(value)
    m = re.fullmatch(r"(\d+)/(\d+)", text, re.ASCII)
    if not m:
        raise ValueError(f"expected I/N such as 0/2, not {text!r}")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or index >= count:
        raise ValueError(f"shard index must be in 0..N-1 and N >= 1, not {text!r}")
    return index, count


def shard_of(ticker: str, shard_count: int) -> int:
    """Stable across processes, versions and platforms (crc32, unlike hash())."""
    return zlib.crc32(ticker.encode()) % shard_count


def parse_url_base(value: object) -> str:
    return parse_str(value).rstrip("/")


# --- the option table -------------------------------------------------------------------------------------

OPTIONS: tuple[Option, ...] = (
    Option("config.file", "", "YAML file of options (keys are the flag names); flags and env win over it"),
    Option(
        "web.listen-address",
        ":9741",
        "address to serve /metrics, /healthz and /readyz on",
        parse_listen_address,
        ("listen_host", "listen_port"),
    ),
    Option("web.telemetry-path", "/metrics", "path of the metrics endpoint", dest="telemetry_path"),
    Option("web.config.file", "", "exporter-toolkit web config (TLS, basic auth)", dest="web_config_file"),
    Option(
        "dydx.network",
        "mainnet",
        "indexer network: mainnet or testnet (sets the default URLs)",
        one_of(NETWORKS),
        "network",
    ),
    Option("dydx.ws-url", "", "full WebSocket URL (default from --dydx.network)", dest="feed.ws_url"),
    Option(
        "dydx.rest-url",
        "",
        "REST base URL, without /v4 (default from --dydx.network)",
        parse_url_base,
        "feed.rest_url",
    ),
    Option("markets", "all", "'all' or a comma-separated list of tickers", parse_markets, "markets"),
    Option(
        "channels",
        ",".join(DEFAULT_CHANNELS),
        "comma-separated channels to subscribe",
        parse_list,
        "channels",
    ),
    Option(
        "candles.resolutions",
        "",
        "candle resolutions to subscribe (enables v4_candles), e.g. 1MIN,5MINS",
        parse_list,
        "candle_resolutions",
    ),
    Option(
        "subaccounts",
        "",
        "comma-separated subaccounts ADDRESS/N (dydx1.../0) to subscribe on v4_subaccounts (off when empty)",
        parse_list,
        "subaccounts",
    ),
    Option(
        "subaccounts.refresh-interval",
        "1m",
        "re-snapshot each subscribed subaccount this often (equity and free collateral come only in "
        "snapshots); 0 = never",
        parse_duration,
        "subaccount_refresh_interval",
    ),
    Option(
        "shard",
        "0/1",
        "I/N: this replica exports the markets whose crc32(ticker) % N == I",
        parse_shard,
        ("shard_index", "shard_count"),
    ),
    Option(
        "feed.batched",
        False,
        "subscribe with batched: true (server flushes every 250 ms)",
        parse_bool,
        "feed.batched",
    ),
    Option(
        "feed.compression",
        False,
        "offer permessage-deflate; the indexer compresses a share of offering connections, frames of "
        "1 KiB and more (README: Performance)",
        parse_bool,
        "feed.compression",
    ),
    Option(
        "feed.backoff-initial",
        "1s",
        "first reconnect/retry backoff (full jitter)",
        parse_positive_duration,
        "feed.backoff_initial",
    ),
    Option(
        "feed.backoff-max", "60s", "reconnect/retry backoff cap", parse_positive_duration, "feed.backoff_max"
    ),
    Option(
        "feed.stable-after",
        "30s",
        "a link up this long resets its backoff",
        parse_duration,
        "feed.stable_after",
    ),
    Option(
        "feed.handshake-timeout",
        "10s",
        "WebSocket handshake and first-frame timeout",
        parse_positive_duration,
        "feed.handshake_timeout",
    ),
    Option(
        "feed.ping-interval",
        "15s",
        "interval of the exporter's own pings (for dydx_ws_ping_rtt_seconds)",
        parse_positive_duration,
        "feed.ping_interval",
    ),
    Option(
        "feed.ping-timeout",
        f"{ch.CLIENT_PING_DEADLINE_S:g}s",
        "a link with no server ping for this long is dead",
        parse_positive_duration,
        "feed.ping_timeout",
    ),
    Option(
        "feed.silence-timeout",
        "30s",
        "a link whose v4_block_height or v4_markets is silent this long is dead",
        parse_positive_duration,
        "feed.silence_timeout",
    ),
    Option(
        "feed.subscribe-rate",
        "40",
        "global subscribe messages per second across all links",
        parse_positive_float,
        "feed.subscribe_rate",
    ),
    Option(
        "feed.subscribe-timeout",
        "30s",
        "a subscribe without an answer for this long is retried",
        parse_positive_duration,
        "feed.subscribe_timeout",
    ),
    Option(
        "feed.resubscribe-delay",
        "5s",
        "delay before retrying a subscribe whose snapshot fetch failed",
        parse_duration,
        "feed.resubscribe_delay",
    ),
    Option(
        "feed.subscribe-retries",
        "5",
        "attempts for a rejected market before giving up until rediscovery",
        parse_positive_int,
        "feed.subscribe_retries",
    ),
    Option(
        "feed.max-subscriptions",
        "32",
        "subscriptions per channel per link (the server's cap is 32)",
        parse_positive_int,
        "feed.max_subscriptions",
    ),
    Option(
        "feed.max-frame-bytes",
        "16777216",
        "frames larger than this are counted as invalid and dropped; twice this closes the link",
        parse_positive_int,
        "feed.max_frame_bytes",
    ),
    Option(
        "discovery.interval",
        "5m",
        "period of the REST /v4/perpetualMarkets refresh",
        parse_positive_duration,
        "feed.discovery_interval",
    ),
    Option(
        "discovery.timeout",
        "10s",
        "timeout of one REST request",
        parse_positive_duration,
        "feed.discovery_timeout",
    ),
    Option(
        "chain.rpc-url",
        "",
        "comma-separated CometBFT RPC URLs of full nodes on the indexer's network (the chain's head); "
        "empty = none",
        parse_list,
        "chain_rpc_urls",
    ),
    Option(
        "chain.poll-interval",
        "2s",
        "period of the /status poll of each --chain.rpc-url",
        parse_positive_duration,
        "chain_poll_interval",
    ),
    Option(
        "rest.height-interval",
        "5s",
        "period of the REST /v4/height poll (REST's head); 0 = never",
        parse_duration,
        "rest_height_interval",
    ),
    Option(
        "orderbook.crossed-resync-after",
        "30s",
        "resubscribe a market's order book that stayed crossed (as delivered) this long; 0 = never",
        parse_duration,
        "crossed_resync_after",
    ),
    Option(
        "orderbook.resync-interval",
        "0",
        "re-snapshot every order book this often (e.g. 1h), staggered and paced; 0 = never",
        parse_duration,
        "resync_interval",
    ),
    Option(
        "orderbook.audit-interval",
        "10m",
        "audit every order book against a REST snapshot this often, staggered, at most one REST request "
        "a second (10m: 267 markets take under 5% of the indexer's 10 requests/s); 0 = never",
        parse_duration,
        "audit_interval",
    ),
    Option(
        "orderbook.audit-window",
        "5s",
        "an audit leaves out levels updated this long before and after its REST fetch (the snapshot race "
        "window of reference §4.3, which also covers REST's replica lag)",
        parse_positive_duration,
        "audit_window",
    ),
    Option(
        "data.stale-after",
        "30s",
        "data older than this makes /readyz fail",
        parse_positive_duration,
        "stale_after",
    ),
    Option(
        "data.message-id-grace",
        "10s",
        "a message id still missing after this long counts as a gap",
        parse_positive_duration,
        "message_id_grace",
    ),
    Option(
        "shutdown.timeout",
        "5s",
        "upper bound of a clean shutdown",
        parse_positive_duration,
        "shutdown_timeout",
    ),
    Option("log.level", "info", "debug, info, warn or error", one_of(LOG_LEVELS, lower=True), "log_level"),
    Option(
        "log.format",
        "auto",
        "json, console, or auto (console on a TTY, json otherwise)",
        one_of(LOG_FORMATS, lower=True),
        "log_format",
    ),
)
OPTIONS_BY_FLAG = {o.flag: o for o in OPTIONS}
_BY_DEST = {
    dest: (opt, part)
    for opt in OPTIONS
    for part, dest in enumerate(opt.dest if isinstance(opt.dest, tuple) else (opt.dest,))
    if dest
}


def default(dest: str) -> Any:
    """The typed default of the option that fills `dest` (the dataclass attribute)."""
    opt, part = _BY_DEST[dest]
    return opt.value[part] if isinstance(opt.dest, tuple) else opt.value
