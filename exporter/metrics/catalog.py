"""Every metric the exporter exposes, declared once: name, type, help text, label names and buckets.

Names are a contract (dashboards, alert rules and outside checks use them): add freely, rename never.
The Collector renders exactly these families, in this order; docs/metrics.md documents each of them and
tests/metrics/test_metrics_doc.py fails when one is missing there (or from the README's table).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["counter", "gauge", "histogram", "info"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric family. Counter names carry their `_total` suffix; `info` renders as a gauge of value 1
    in the Prometheus text format and as an OpenMetrics info family (name without `_info`)."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def family(self) -> str:
        """The OpenMetrics family name: counters lose `_total`, info metrics lose `_info`."""
        if self.kind == "counter" and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        if self.kind == "info" and self.name.endswith("_info"):
            return self.name[: -len("_info")]
        return self.name


def _decades(mantissas: tuple[float, ...], scales: tuple[float, ...], upto: float) -> tuple[float, ...]:
    values = {round(m * s, 6) for s in scales for m in mantissas}
    return tuple(sorted(v for v in values if v <= upto))


# Feed lag spans ~10 ms (healthy, same region) to minutes (a stalled indexer). Above 0.1 s consecutive
# bounds differ by at most 14%, so histogram_quantile's linear interpolation inside one bucket is off by at
# most ~7% of the true value: a simulated lag of L seconds reads within 10% of L up to 60 s.
_FINE_MANTISSAS: Final = (
    1.0, 1.1, 1.25, 1.4, 1.6, 1.8, 2.0, 2.25, 2.5, 2.8, 3.2, 3.6, 4.0, 4.5, 5.0, 5.5, 6.3, 7.0, 8.0, 9.0,
)  # fmt: skip
FEED_LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    *(0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09),
    *_decades(_FINE_MANTISSAS, (0.1, 1.0, 10.0), 60.0),
    *(60.0, 65.0, 70.0, 80.0, 90.0, 120.0, 180.0, 300.0, 600.0),
)
# Decode → state → metrics is a few microseconds per frame; the top buckets catch snapshots (hundreds of
# KB) and a loop held up by something else.
PROCESSING_BUCKETS: Final[tuple[float, ...]] = (
    0.000002, 0.000005, 0.00001, 0.00002, 0.00003, 0.00005, 0.000075, 0.0001, 0.0002, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
# Loopback to a remote indexer: sub-millisecond to seconds (the server drops us at 10 s without a pong).
PING_RTT_BUCKETS: Final[tuple[float, ...]] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0,
    5.0, 10.0,
)  # fmt: skip
REST_DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
# A full node's /status: milliseconds on a LAN to seconds through a public endpoint (the poll's timeout).
CHAIN_RPC_DURATION_BUCKETS: Final[tuple[float, ...]] = REST_DURATION_BUCKETS
LOOP_LAG_BUCKETS: Final[tuple[float, ...]] = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
)  # fmt: skip

# --- Throughput -----------------------------------------------------------------------------------------
WS_MESSAGES = MetricSpec(
    "dydx_ws_messages_total",
    "counter",
    "WebSocket frames received, by channel and frame type (channel none for connected and error frames "
    "without one).",
    ("channel", "type"),
)
WS_RECEIVED_BYTES = MetricSpec(
    "dydx_ws_received_bytes_total",
    "counter",
    "Payload bytes of received WebSocket frames (characters for text frames; the feed is ASCII).",
)
UPDATES = MetricSpec(
    "dydx_updates_total",
    "counter",
    "Data updates received, by channel; each element of a batched contents array counts once.",
    ("channel",),
)
TRADES = MetricSpec(
    "dydx_trades_total",
    "counter",
    "Live trades (taker fills), de-duplicated by id, by market and taker side; snapshot rows never count.",
    ("market", "side"),
)
TRADE_VOLUME = MetricSpec(
    "dydx_trade_volume_total",
    "counter",
    "Traded size in base units of live trades, by market and taker side.",
    ("market", "side"),
)
TRADE_NOTIONAL = MetricSpec(
    "dydx_trade_notional_total",
    "counter",
    "Traded notional (price times size) in quote units of live trades, by market and taker side.",
    ("market", "side"),
)

# --- Latency --------------------------------------------------------------------------------------------
FEED_LATENCY = MetricSpec(
    "dydx_feed_latency_seconds",
    "histogram",
    "Exchange event time to receipt: trade createdAt, block time, oracle effectiveAt; candles carry no "
    "event time and use the newest exchange time seen on any channel.",
    ("channel",),
    FEED_LATENCY_BUCKETS,
)
PROCESSING = MetricSpec(
    "dydx_processing_seconds",
    "histogram",
    "Receipt of a frame to its metrics updated (decode, state, counting), by channel.",
    ("channel",),
    PROCESSING_BUCKETS,
)
PING_RTT = MetricSpec(
    "dydx_ws_ping_rtt_seconds",
    "histogram",
    "Round trip of the exporter's own WebSocket pings.",
    (),
    PING_RTT_BUCKETS,
)

# --- Errors ---------------------------------------------------------------------------------------------
WS_ERRORS = MetricSpec(
    "dydx_ws_errors_total",
    "counter",
    "Error frames sent by the server, by bounded reason (never the message text).",
    ("reason",),
)
MESSAGES_INVALID = MetricSpec(
    "dydx_messages_invalid_total",
    "counter",
    "Frames or updates rejected by the exporter (not JSON, wrong types, missing fields, bad numbers, "
    "oversized, unknown channel or market), by channel (unknown when not known yet) and reason.",
    ("channel", "reason"),
)
CONNECTION_FAILURES = MetricSpec(
    "dydx_ws_connection_failures_total",
    "counter",
    "Failed WebSocket connection attempts, by reason.",
    ("reason",),
)
DISCONNECTS = MetricSpec(
    "dydx_ws_disconnects_total",
    "counter",
    "WebSocket disconnections, by close code (1006 for a drop without a close frame).",
    ("code",),
)
RECONNECTS = MetricSpec(
    "dydx_ws_reconnects_total",
    "counter",
    "WebSocket links that came back after having been up.",
)
MESSAGE_ID_GAPS = MetricSpec(
    "dydx_message_id_gaps_total",
    "counter",
    "Message ids never received on a healthy connection within the grace window (lost frames).",
)
TRADES_DUPLICATE = MetricSpec(
    "dydx_trades_duplicate_total",
    "counter",
    "Live trades dropped because their id was already seen (snapshot or earlier update).",
)
SUBSCRIPTION_FAILURES = MetricSpec(
    "dydx_subscription_failures_total",
    "counter",
    "Failed subscriptions, by channel and bounded reason.",
    ("channel", "reason"),
)

# --- Status ---------------------------------------------------------------------------------------------
COMPONENT_UP = MetricSpec(
    "dydx_component_up",
    "gauge",
    "1 when the component works: websocket (a link is connected), rest (discovery answers), processor "
    "(data is fresh).",
    ("component",),
)
READY = MetricSpec(
    "dydx_ready",
    "gauge",
    "1 exactly when /readyz answers 200: links connected, subscriptions active, and every subscribed "
    "channel expected to flow sent data within --data.stale-after.",
)
WS_CONNECTED = MetricSpec(
    "dydx_ws_connected",
    "gauge",
    "1 while the named WebSocket link of the pool is connected.",
    ("connection",),
)
SUBSCRIPTIONS = MetricSpec(
    "dydx_subscriptions",
    "gauge",
    "Subscriptions by channel and state (active, pending, failed).",
    ("channel", "state"),
)
LAST_MESSAGE = MetricSpec(
    "dydx_last_message_timestamp_seconds",
    "gauge",
    "Unix time of the last snapshot or data frame received, by channel (0 before the first one).",
    ("channel",),
)
BLOCK_HEIGHT = MetricSpec(
    "dydx_block_height",
    "gauge",
    "Latest block height from v4_block_height (0 before the first one).",
)
BLOCK_TIMESTAMP = MetricSpec(
    "dydx_block_timestamp_seconds",
    "gauge",
    "Unix time of the latest block from v4_block_height (0 before the first one).",
)

# --- Who is at fault: the chain's, REST's and each link's head (README "Is it the chain or the indexer?") --
CHAIN_BLOCK_HEIGHT = MetricSpec(
    "dydx_chain_block_height",
    "gauge",
    "Latest block height a --chain.rpc-url full node reports (CometBFT /status), once it answered.",
    ("rpc",),
)
CHAIN_BLOCK_TIMESTAMP = MetricSpec(
    "dydx_chain_block_timestamp_seconds",
    "gauge",
    "Unix time of the latest block a --chain.rpc-url full node reports.",
    ("rpc",),
)
CHAIN_CATCHING_UP = MetricSpec(
    "dydx_chain_catching_up",
    "gauge",
    "1 while the full node says it is catching up (its latest block is not the chain's head).",
    ("rpc",),
)
CHAIN_RPC_UP = MetricSpec(
    "dydx_chain_rpc_up",
    "gauge",
    "1 when the last /status poll of the full node succeeded and it is on the indexer's network.",
    ("rpc",),
)
CHAIN_RPC_REQUESTS = MetricSpec(
    "dydx_chain_rpc_requests_total",
    "counter",
    "CometBFT /status polls by node and outcome (HTTP status, timeout, connection_error, invalid_body).",
    ("rpc", "code"),
)
CHAIN_RPC_DURATION = MetricSpec(
    "dydx_chain_rpc_request_duration_seconds",
    "histogram",
    "Duration of CometBFT /status polls by node.",
    ("rpc",),
    CHAIN_RPC_DURATION_BUCKETS,
)
REST_BLOCK_HEIGHT = MetricSpec(
    "dydx_rest_block_height",
    "gauge",
    "Latest block height of the indexer's REST API (/v4/height, its read replicas), once it answered.",
)
REST_BLOCK_TIMESTAMP = MetricSpec(
    "dydx_rest_block_timestamp_seconds",
    "gauge",
    "Unix time of the latest block of the indexer's REST API (/v4/height).",
)
LINK_BLOCK_HEIGHT = MetricSpec(
    "dydx_link_block_height",
    "gauge",
    "Latest block height from v4_block_height on each WebSocket link (dydx_block_height is the freshest).",
    ("connection",),
)
LINK_BLOCK_TIMESTAMP = MetricSpec(
    "dydx_link_block_timestamp_seconds",
    "gauge",
    "Unix time of the latest block from v4_block_height on each WebSocket link.",
    ("connection",),
)
BUILD_INFO = MetricSpec(
    "dydx_exporter_build_info",
    "info",
    "Always 1; the version label is the exporter's version.",
    ("version",),
)
MARKET_INFO = MetricSpec(
    "dydx_market_info",
    "info",
    "Always 1 for every listed market; the status label is its market status.",
    ("market", "status"),
)

# --- Data quality ---------------------------------------------------------------------------------------
BOOK_CROSSED = MetricSpec(
    "dydx_orderbook_crossed",
    "gauge",
    "1 while the order book as delivered by the feed is crossed (best bid >= best ask).",
    ("market",),
)
BOOK_CROSSED_EPISODES = MetricSpec(
    "dydx_orderbook_crossed_total",
    "counter",
    "Crossing episodes of the order book as delivered (transitions into crossed).",
    ("market",),
)
BOOK_CROSSED_SECONDS = MetricSpec(
    "dydx_orderbook_crossed_seconds_total",
    "counter",
    "Seconds the order book as delivered spent crossed.",
    ("market",),
)
BOOK_BEST_PRICE = MetricSpec(
    "dydx_orderbook_best_price",
    "gauge",
    "Best price of the uncrossed book (official recipe: drop the older top level by message id), by side "
    "(bid, ask); absent while that side is empty.",
    ("market", "side"),
)
BOOK_SPREAD_RATIO = MetricSpec(
    "dydx_orderbook_spread_ratio",
    "gauge",
    "(best ask - best bid) / mid price of the uncrossed book; absent while a side is empty.",
    ("market",),
)
BOOK_LEVELS = MetricSpec(
    "dydx_orderbook_levels",
    "gauge",
    "Price levels held in the book as delivered, by side (bid, ask).",
    ("market", "side"),
)
BOOK_UPDATES = MetricSpec(
    "dydx_orderbook_updates_total",
    "counter",
    "Order-book level updates applied to the market's book.",
    ("market",),
)
BOOK_RESYNCS = MetricSpec(
    "dydx_orderbook_resyncs_total",
    "counter",
    "Order book re-snapshots, by reason (reconnect: after the link dropped; resubscribe: on the same link; "
    "crossed: the exporter resubscribed a book that stayed crossed past --orderbook.crossed-resync-after; "
    "periodic: every --orderbook.resync-interval).",
    ("market", "reason"),
)
BOOK_AUDITS = MetricSpec(
    "dydx_orderbook_audits_total", "counter",
    "Audits of the held order book against a fresh REST snapshot (every --orderbook.audit-interval).",
    ("market",),
)  # fmt: skip
BOOK_AUDIT_MISMATCHED = MetricSpec(
    "dydx_orderbook_audit_mismatched_levels_total", "counter",
    "Levels an audit found wrong within the snapshot's depth, leaving out levels updated in the race "
    "window, by kind (missing: in the snapshot only; extra: held only; size: sizes differ).",
    ("market", "kind"),
)  # fmt: skip
BOOK_AUDIT_RATIO = MetricSpec(
    "dydx_orderbook_audit_mismatch_ratio", "gauge",
    "Mismatched levels / levels compared in the market's latest audit.", ("market",),
)  # fmt: skip
SCHEMA_UNKNOWN = MetricSpec(
    "dydx_schema_unknown_fields_total", "counter", "Fields the exporter does not know, in snapshots and a "
    "sample of updates (the names are logged once each: schema_unknown_field).", ("channel",),
)  # fmt: skip
CANDLE_GAPS = MetricSpec(
    "dydx_candle_gaps_total", "counter", "Candle periods skipped: a subscribed candle's startedAt jumped by "
    "more than one period (a candle exists for every period with blocks).", ("market", "resolution"),
)  # fmt: skip
MARKET_LAST_UPDATE = MetricSpec(
    "dydx_market_last_update_timestamp_seconds",
    "gauge",
    "Unix time of the last snapshot or update received for the market, by channel (v4_orderbook, "
    "v4_trades, v4_candles, and v4_markets for its oracle price); absent before the first one.",
    ("market", "channel"),
)
ORACLE_PRICE = MetricSpec(
    "dydx_oracle_price",
    "gauge",
    "Latest oracle price, by market; absent before the first one.",
    ("market",),
)
ORACLE_TIMESTAMP = MetricSpec(
    "dydx_oracle_price_timestamp_seconds",
    "gauge",
    "Exchange time (effectiveAt) of the market's latest oracle price update; absent before the first one.",
    ("market",),
)
ORACLE_DEVIATION = MetricSpec(
    "dydx_oracle_mid_deviation_ratio",
    "gauge",
    "Distance of the oracle price from the mid of the market's uncrossed two-sided book, over the mid; "
    "absent without one.",
    ("market",),
)
LAST_TRADE_PRICE = MetricSpec(
    "dydx_last_trade_price",
    "gauge",
    "Price of the latest live trade, by market; absent before the first one.",
    ("market",),
)

# --- Subaccounts (only those named by --subaccounts) ------------------------------------------------------
SUBACCOUNT_EQUITY = MetricSpec(
    "dydx_subaccount_equity",
    "gauge",
    "Equity of the subaccount in quote units (USDC) as of its latest v4_subaccounts snapshot; absent "
    "until one arrives (or while the indexer does not know the subaccount).",
    ("subaccount",),
)
SUBACCOUNT_FREE_COLLATERAL = MetricSpec(
    "dydx_subaccount_free_collateral",
    "gauge",
    "Free collateral of the subaccount in quote units (USDC) as of its latest v4_subaccounts snapshot; "
    "absent until one arrives.",
    ("subaccount",),
)
SUBACCOUNT_OPEN_POSITIONS = MetricSpec(
    "dydx_subaccount_open_positions",
    "gauge",
    "Open perpetual positions of the subaccount (snapshot, then perpetualPositions updates).",
    ("subaccount",),
)
SUBACCOUNT_OPEN_ORDERS = MetricSpec(
    "dydx_subaccount_open_orders",
    "gauge",
    "Open orders of the subaccount (OPEN, UNTRIGGERED, BEST_EFFORT_OPENED; snapshot, then orders updates).",
    ("subaccount",),
)
SUBACCOUNT_FILLS = MetricSpec(
    "dydx_subaccount_fills_total",
    "counter",
    "Fills of the subaccount received live (de-duplicated by id), by side (buy, sell).",
    ("subaccount", "side"),
)

# --- The exporter itself --------------------------------------------------------------------------------
REST_REQUESTS = MetricSpec(
    "dydx_rest_requests_total",
    "counter",
    "REST requests to the indexer, by route template and HTTP status (or error class).",
    ("endpoint", "code"),
)
REST_DURATION = MetricSpec(
    "dydx_rest_request_duration_seconds",
    "histogram",
    "Duration of REST requests to the indexer, by route template.",
    ("endpoint",),
    REST_DURATION_BUCKETS,
)
LOOP_LAG = MetricSpec(
    "dydx_exporter_event_loop_lag_seconds",
    "histogram",
    "How late the event loop woke a periodic probe (time the loop was held up).",
    (),
    LOOP_LAG_BUCKETS,
)
SCRAPE_DURATION = MetricSpec(
    "dydx_exporter_scrape_duration_seconds",
    "gauge",
    "Wall time of the previous /metrics render (including the yields that let the feed run).",
)
SCRAPE_SIZE = MetricSpec(
    "dydx_exporter_scrape_size_bytes",
    "gauge",
    "Uncompressed size of the previous /metrics body.",
)

#: Every family, in exposition order.
CATALOG: Final[tuple[MetricSpec, ...]] = (
    BUILD_INFO,
    COMPONENT_UP,
    READY,
    WS_CONNECTED,
    SUBSCRIPTIONS,
    WS_MESSAGES,
    WS_RECEIVED_BYTES,
    UPDATES,
    LAST_MESSAGE,
    WS_ERRORS,
    MESSAGES_INVALID,
    CONNECTION_FAILURES,
    DISCONNECTS,
    RECONNECTS,
    MESSAGE_ID_GAPS,
    SUBSCRIPTION_FAILURES,
    PING_RTT,
    FEED_LATENCY,
    PROCESSING,
    BLOCK_HEIGHT,
    BLOCK_TIMESTAMP,
    LINK_BLOCK_HEIGHT,
    LINK_BLOCK_TIMESTAMP,
    REST_BLOCK_HEIGHT,
    REST_BLOCK_TIMESTAMP,
    CHAIN_BLOCK_HEIGHT,
    CHAIN_BLOCK_TIMESTAMP,
    CHAIN_CATCHING_UP,
    CHAIN_RPC_UP,
    CHAIN_RPC_REQUESTS,
    CHAIN_RPC_DURATION,
    MARKET_INFO,
    ORACLE_PRICE,
    ORACLE_TIMESTAMP,
    ORACLE_DEVIATION,
    TRADES,
    TRADE_VOLUME,
    TRADE_NOTIONAL,
    TRADES_DUPLICATE,
    LAST_TRADE_PRICE,
    BOOK_CROSSED,
    BOOK_CROSSED_EPISODES,
    BOOK_CROSSED_SECONDS,
    BOOK_BEST_PRICE,
    BOOK_SPREAD_RATIO,
    BOOK_LEVELS,
    BOOK_UPDATES,
    BOOK_RESYNCS,
    BOOK_AUDITS,
    BOOK_AUDIT_MISMATCHED,
    BOOK_AUDIT_RATIO,
    CANDLE_GAPS,
    SCHEMA_UNKNOWN,
    MARKET_LAST_UPDATE,
    SUBACCOUNT_EQUITY,
    SUBACCOUNT_FREE_COLLATERAL,
    SUBACCOUNT_OPEN_POSITIONS,
    SUBACCOUNT_OPEN_ORDERS,
    SUBACCOUNT_FILLS,
    REST_REQUESTS,
    REST_DURATION,
    LOOP_LAG,
    SCRAPE_DURATION,
    SCRAPE_SIZE,
)

# Bounded label values that exist from the start (created at zero).
INVALID_REASONS: Final[tuple[str, ...]] = (
    "oversized",
    "not_json",
    "not_object",
    "unknown_type",
    "unknown_channel",
    "missing_field",
    "wrong_type",
    "bad_number",
    "bad_message_id",
    "unknown_market",
    "unknown_subaccount",
    "no_snapshot",
    "processing_error",
)
#: The `channel` label of a frame rejected before its channel is known.
UNKNOWN_CHANNEL: Final = "unknown"
#: The `channel` label of frames that carry none (connected, most errors).
NO_CHANNEL: Final = "none"
CONNECTION_FAILURE_REASONS: Final[tuple[str, ...]] = (
    "dns", "refused", "timeout", "tls", "http_429", "http_error", "handshake", "reset",
    # A 429 with x-dydx-ratelimit-reason: subscription-limit-abuse (socks' reconnect penalty).
    "penalized",
    # A link the watchdog declared dead: accepted but never spoke, no server ping, data gone silent.
    "silent", "ping_timeout", "stale", "frame_too_large",
    "other",
)  # fmt: skip
DISCONNECT_CODES: Final[tuple[str, ...]] = ("1000", "1006", "1008", "1011", "1012", "4000", "4008")
SUBSCRIPTION_STATES: Final[tuple[str, ...]] = ("active", "pending", "failed")
SUBSCRIPTION_FAILURE_REASONS: Final[tuple[str, ...]] = (
    "invalid_subscription_id",
    "snapshot_fetch_failed",
    "subscription_limit",
    "subscribe_rate_limited",
    "already_subscribed",
    "timeout",
    "other",
)
COMPONENTS: Final[tuple[str, ...]] = ("websocket", "rest", "processor")
RESYNC_REASONS: Final[tuple[str, ...]] = ("reconnect", "resubscribe", "crossed", "periodic")
AUDIT_KINDS: Final[tuple[str, ...]] = ("missing", "extra", "size")
BOOK_SIDES: Final[tuple[str, str]] = ("bid", "ask")
TRADE_SIDE_LABELS: Final[tuple[str, str]] = ("buy", "sell")


if __name__ == "__main__":  # `make docs`: the tables are written by exporter.metrics.docs
    from exporter.metrics.docs import main

    sys.exit(main(sys.argv[1:]))
