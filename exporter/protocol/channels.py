"""Channel names, id formats, versions, caps, rate limits, close codes and error texts of the indexer, and
the chain id of each network.

Every constant here is quoted from the indexer's source (see the protocol reference); the feed and
the simulator both use them so the two directions cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

MARKETS: Final = "v4_markets"
TRADES: Final = "v4_trades"
ORDERBOOK: Final = "v4_orderbook"
CANDLES: Final = "v4_candles"
BLOCK_HEIGHT: Final = "v4_block_height"
SUBACCOUNTS: Final = "v4_subaccounts"
PARENT_SUBACCOUNTS: Final = "v4_parent_subaccounts"
#: The id the server keys block height under (the client sends none).
BLOCK_HEIGHT_ID: Final = "v4_block_height"

#: What one subscription id names: a market (ticker, or ticker/resolution for candles), an account
#: (address/number), or nothing (a feed-wide channel, subscribed without an id).
Scope = Literal["market", "account", "feed"]


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """Everything the exporter and the simulator know about one channel, in one row of CHANNELS."""

    name: str
    #: `version` carried by channel_data / channel_batch_data frames (never by `subscribed`).
    version: str
    #: Per-connection subscription cap (v4-chain PR #3131).
    cap: int
    scope: Scope
    #: The state handler (a module of exporter.state, by name: protocol/ imports nothing of the project).
    handler: str
    #: Flows at a steady rate: a link whose subscription stays silent past --feed.silence-timeout is dead.
    rated: bool = False
    #: Frames carry an exchange time: dydx_feed_latency_seconds is observed for it.
    timed: bool = False
    #: May legitimately stay silent for minutes (no trade, no account activity): exempt from /readyz's
    #: freshness check.
    quiet: bool = False
    #: --channels accepts it; `default` ones are subscribed without --channels.
    selectable: bool = True
    default: bool = False
    #: One subscription per candle resolution; the id is `ticker/resolution`.
    per_resolution: bool = False
    #: The id the server keys a feed-wide subscription under (the client sends none).
    server_id: str | None = None
    #: Subscribes carry `batched` (the clients send none for block height).
    batchable: bool = True

    @property
    def sends_id(self) -> bool:
        """Subscribed with an `id`. Sending one for a feed-wide channel makes the server key the
        subscription under it, so the snapshot arrives but updates never do."""
        return self.scope != "feed"

    def market_ids(self, ticker: str, resolutions: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The subscription ids one market takes on this (market-scoped) channel."""
        if self.per_resolution:
            return tuple(candle_id(ticker, r) for r in resolutions)
        return (ticker,)

    def market_of(self, sub_id: str) -> str:
        """The ticker a market-scoped subscription id names."""
        return sub_id.rpartition("/")[0] if self.per_resolution else sub_id


#: The indexer's channels, in the order the exporter lists them.
CHANNELS: Final[dict[str, ChannelSpec]] = {
    spec.name: spec
    for spec in (
        ChannelSpec(MARKETS, "1.0.0", 32, "feed", "markets", rated=True, timed=True, default=True),
        ChannelSpec(TRADES, "2.1.0", 32, "market", "trades", timed=True, default=True),
        ChannelSpec(ORDERBOOK, "1.0.0", 32, "market", "orderbook", default=True),
        ChannelSpec(CANDLES, "1.0.0", 32, "market", "candles", timed=True, quiet=True, per_resolution=True),
        ChannelSpec(
            BLOCK_HEIGHT,
            "1.0.0",
            1,
            "feed",
            "block_height",
            rated=True,
            timed=True,
            default=True,
            server_id=BLOCK_HEIGHT_ID,
            batchable=False,
        ),
        # Enabled by --subaccounts, which names the accounts.
        ChannelSpec(SUBACCOUNTS, "3.0.0", 256, "account", "subaccounts", quiet=True, selectable=False),
        ChannelSpec(PARENT_SUBACCOUNTS, "3.0.0", 256, "account", "ignored", quiet=True, selectable=False),
    )
}

# Views of the table, for callers that want one fact of every channel.
ALL_CHANNELS: Final[tuple[str, ...]] = tuple(CHANNELS)
DEFAULT_CHANNELS: Final = tuple(name for name, spec in CHANNELS.items() if spec.default)
SELECTABLE_CHANNELS: Final = tuple(name for name, spec in CHANNELS.items() if spec.selectable)
CHANNELS_WITHOUT_ID: Final = frozenset(name for name, spec in CHANNELS.items() if not spec.sends_id)
RATED_CHANNELS: Final = tuple(name for name, spec in CHANNELS.items() if spec.rated)
VERSIONS: Final[dict[str, str]] = {name: spec.version for name, spec in CHANNELS.items()}
SUBSCRIPTION_CAPS: Final[dict[str, int]] = {name: spec.cap for name, spec in CHANNELS.items()}


CANDLE_RESOLUTIONS: Final[tuple[str, ...]] = ("1MIN", "5MINS", "15MINS", "30MINS", "1HOUR", "4HOURS", "1DAY")
CANDLE_RESOLUTION_SECONDS: Final[dict[str, int]] = {
    "1MIN": 60,
    "5MINS": 300,
    "15MINS": 900,
    "30MINS": 1800,
    "1HOUR": 3600,
    "4HOURS": 14400,
    "1DAY": 86400,
}

#: Subaccount numbers are < 128000; parent subaccount numbers < 128; child = parent + 128 * k, k < 1000.
MAX_SUBACCOUNT_NUMBER: Final = 128_000
MAX_PARENT_SUBACCOUNT_NUMBER: Final = 128
TICKER_RE: Final = re.compile(r"^[A-Z0-9][A-Z0-9.,_-]*-[A-Z0-9]+$")
ADDRESS_RE: Final = re.compile(r"^dydx1[0-9a-z]{38,58}$")
#: --dydx.network → the CometBFT network (chain id) of its full nodes.
CHAIN_NETWORKS: Final[dict[str, str]] = {"mainnet": "dydx-mainnet-1", "testnet": "dydx-testnet-4"}

# Frame `type` values.
T_CONNECTED: Final = "connected"
T_SUBSCRIBED: Final = "subscribed"
T_UNSUBSCRIBED: Final = "unsubscribed"
T_CHANNEL_DATA: Final = "channel_data"
T_CHANNEL_BATCH_DATA: Final = "channel_batch_data"
T_ERROR: Final = "error"
#: The ones a channel's subscription carries (the exporter counts them per channel).
CHANNEL_FRAME_TYPES: Final = (T_SUBSCRIBED, T_UNSUBSCRIBED, T_CHANNEL_DATA, T_CHANNEL_BATCH_DATA, T_ERROR)
FRAME_TYPES: Final = (T_CONNECTED, *CHANNEL_FRAME_TYPES)

# Timing, from socks' config defaults.
BATCH_SEND_INTERVAL_S: Final = 0.25
SERVER_PING_INTERVAL_S: Final = 30.0
SERVER_PONG_TIMEOUT_S: Final = 10.0
#: A client that sees no server ping for this long treats the link as dead (nautilus uses 40 s).
CLIENT_PING_DEADLINE_S: Final = 40.0
SNAPSHOT_FETCH_TIMEOUT_S: Final = 5.0
MARKET_LIST_REFRESH_S: Final = 300.0
TRADING_DIFF_INTERVAL_S: Final = 30.0

# Rate limits: more than N in a fixed 1 s window closes the connection with 1008.
SUBSCRIBE_ATTEMPTS_PER_WINDOW: Final = 2
INVALID_MESSAGES_PER_WINDOW: Final = 2
RATE_LIMIT_WINDOW_S: Final = 1.0

# Close codes.
CLOSE_RATE_LIMITED: Final = 1008
CLOSE_HEARTBEAT_TIMEOUT: Final = 1011
CLOSE_SERVICE_RESTARTING: Final = 1012
CLOSE_SEND_ERROR: Final = 4000
CLOSE_ABNORMAL: Final = 1006
#: Later socks (protocol reference §6): dropped for subscription-limit abuse; the reason says how long
#: reconnects from the address are refused.
CLOSE_SUBSCRIPTION_LIMIT_ABUSE: Final = 4008
#: A client frame over WS_MAX_PAYLOAD_BYTES (RFC 6455 "message too big").
CLOSE_MESSAGE_TOO_BIG: Final = 1009
RATE_LIMITED_REASON: Final = '{"message":"Rate limited"}'
SERVICE_RESTARTING_REASON: Final = '{"message":"Service restarting"}'
HEARTBEAT_TIMEOUT_REASON: Final = "Heartbeat timeout"

# Newer socks behaviour (protocol reference §6), each behind a switch whose hosted value is not public.
#: More than ABUSE_HITS per-connection cap hits within ABUSE_WINDOW_S on one connection (all channels and
#: ids together) drop it with 4008; the socket is destroyed ABUSE_DESTROY_AFTER_S later if the client
#: ignores the close, and the address's upgrades are refused with 429 for RECONNECT_PENALTY_S.
ABUSE_HITS: Final = 5
ABUSE_WINDOW_S: Final = 10.0
ABUSE_DESTROY_AFTER_S: Final = 1.0
RECONNECT_PENALTY_S: Final = 30
RATELIMIT_REASON_HEADER: Final = "x-dydx-ratelimit-reason"
RATELIMIT_REASON_ABUSE: Final = "subscription-limit-abuse"
#: At the edge: EDGE_BLOCK_REFUSALS penalty 429s within EDGE_BLOCK_WINDOW_S block the address for
#: EDGE_BLOCK_S, answered with a JSON 429 whose `error` is EDGE_BLOCK_ERROR.
EDGE_BLOCK_REFUSALS: Final = 5
EDGE_BLOCK_WINDOW_S: Final = 60.0
EDGE_BLOCK_S: Final = 300
EDGE_BLOCK_ERROR: Final = "subscription_limit_abuse"
#: Inbound frames larger than this are closed with 1009 (WS_MAX_PAYLOAD_BYTES).
WS_MAX_PAYLOAD_BYTES: Final = 65_536
#: permessage-deflate: messages under this many bytes are sent uncompressed even on a compressing
#: connection (WS_COMPRESSION_THRESHOLD_BYTES).
WS_COMPRESSION_THRESHOLD_BYTES: Final = 1024


def subscription_limit_abuse_reason(retry_after: int) -> str:
    """The 4008 close reason, exact (socks' JSON key order)."""
    return (
        '{"message":"Subscription limit abuse","reason":"subscription-limit-abuse",'
        f'"retryAfterSeconds":{retry_after}}}'
    )


# REST.
REST_DEFAULT_LIMIT: Final = 1000
REST_MAX_LIMIT: Final = 1000
REST_ORDERBOOK_MAX_LEVELS: Final = 100
REST_RATE_LIMIT_POINTS: Final = 100
REST_RATE_LIMIT_WINDOW_S: Final = 10.0
REST_TOO_MANY_REQUESTS: Final = "Too many requests"

MARKET_STATUSES: Final[tuple[str, ...]] = (
    "ACTIVE",
    "PAUSED",
    "CANCEL_ONLY",
    "POST_ONLY",
    "INITIALIZING",
    "FINAL_SETTLEMENT",
)
TRADE_SIDES: Final[tuple[str, ...]] = ("BUY", "SELL")
TRADE_TYPES: Final[tuple[str, ...]] = ("LIMIT", "LIQUIDATED", "DELEVERAGED", "TWAP_SUBORDER")


# Error texts, exact (socks' words, spaces and punctuation): first the fixed ones.
ERR_COULD_NOT_PARSE: Final = "Invalid message: could not parse"
ERR_TYPE_REQUIRED: Final = "Invalid message: type is required"
ERR_CHANNEL_REQUIRED: Final = "Invalid subscribe message: channel is required"
ERR_TOO_MANY_INVALID: Final = "Too many invalid messages. Please reconnect and try again."
ERR_INTERNAL: Final = "Internal error"
ERR_GEOBLOCKED_PREFIX: Final = "Because this address appears to be a resident of"


@dataclass(frozen=True, slots=True)
class ErrorTemplate:
    """An error text socks puts values into. Called with the values, in the order the text shows them, it
    gives the exact text: `head`, the fixed start that ERROR_REASONS matches, then `tail` filled in (a
    str.format template)."""

    head: str
    tail: str

    def __call__(self, *values: str | int) -> str:
        return self.head + self.tail.format(*values)


# Then the ones with values, called like functions: err_invalid_channel(channel).
err_invalid_type: Final = ErrorTemplate("Invalid message type:", " {}")
err_invalid_channel: Final = ErrorTemplate("Invalid channel:", " {}")
err_invalid_id: Final = ErrorTemplate("Invalid id:", " {}")
#: Values: channel, id.
err_invalid_subscription_id: Final = ErrorTemplate("Invalid subscription id for channel:", " ({}-{})")
#: Values: channel, id.
err_already_subscribed: Final = ErrorTemplate("Invalid subscribe message: already subscribed", " ({}-{})")
#: Values: channel.
err_could_not_fetch: Final = ErrorTemplate("Internal error, could not fetch data for subscription:", " {}.")
#: Values: channel, id. Two spaces before "reconnect": verbatim from socks.
err_too_many_subscribes: Final = ErrorTemplate(
    "Too many subscribe attempts", " for channel {}-{}. Please  reconnect and try again."
)
#: Values: channel, limit.
err_subscription_limit: Final = ErrorTemplate(
    "Per-connection subscription limit reached", " for {} (limit={})."
)
#: Values: channel, limit, retry_after (seconds).
err_subscription_limit_abuse: Final = ErrorTemplate(
    "Repeatedly exceeded the per-connection subscription limit",
    " for {} (limit={}). Unsubscribe before subscribing again, or open an additional connection. Closing "
    "this connection; reconnecting sooner than {}s will be refused.",
)

#: Bounded `reason` label values for server error frames, matched by the start of the text, most specific
#: first.
ERROR_REASONS: Final[tuple[tuple[str, str], ...]] = (
    (ERR_COULD_NOT_PARSE, "invalid_message"),
    (ERR_TYPE_REQUIRED, "invalid_message"),
    (err_invalid_type.head, "invalid_message"),
    (ERR_CHANNEL_REQUIRED, "invalid_channel"),
    (err_invalid_channel.head, "invalid_channel"),
    (err_invalid_id.head, "invalid_id"),
    (err_invalid_subscription_id.head, "invalid_subscription_id"),
    (err_already_subscribed.head, "already_subscribed"),
    (err_could_not_fetch.head, "snapshot_fetch_failed"),
    (err_too_many_subscribes.head, "subscribe_rate_limited"),
    ("Too many invalid messages", "invalid_rate_limited"),
    (err_subscription_limit.head, "subscription_limit"),
    (err_subscription_limit_abuse.head, "subscription_limit_abuse"),
    (ERR_GEOBLOCKED_PREFIX, "geoblocked"),
    (ERR_INTERNAL, "internal_error"),
)
ERROR_REASON_OTHER: Final = "other"


def classify_error(message: str) -> str:
    """Map a server error text to a bounded label value (never the text itself)."""
    for prefix, reason in ERROR_REASONS:
        if message.startswith(prefix):
            return reason
    return ERROR_REASON_OTHER


def candle_id(ticker: str, resolution: str) -> str:
    return f"{ticker}/{resolution}"


def trade_id_height(trade_id: str) -> int:
    """Block height encoded in the first 8 hex digits of a 24-hex trade event id."""
    return int(trade_id[:8], 16)
