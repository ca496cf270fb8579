"""dYdX feed overview: is data flowing, how late is it, how often does it break, what is down."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.blocks import (
    GREEN,
    MARKET,
    OVERVIEW,
    PanelBuilder,
    Q,
    Section,
    Thresholds,
    age,
    build_dashboard,
    event_bars,
    events,
    exporters_only,
    graph,
    latency,
    listing,
    one_replica,
    per,
    per_second,
    rate,
    sel,
    single,
    states,
)
from grafana.dashboards_src.fault import who_is_at_fault_row

ACTIVE = 'state="active"'
#: Channels that are silent on a healthy feed (a subaccount that does not trade).
QUIET_BY_NATURE = 'channel!="v4_subaccounts"'
FIRING = 'alertstate="firing"'
UP_DOWN = {"0": ("down", "red"), "1": ("up", "green")}
NOT_ACTIVE = 'status!="ACTIVE"'
#: Every market status of the protocol (exporter.protocol.channels.MARKET_STATUSES, a test holds them equal)
#: with the number the status timeline draws it as and its colour.
MARKET_STATUS_STATES: dict[str, tuple[int, str]] = {
    "ACTIVE": (1, "green"),
    "PAUSED": (2, "red"),
    "CANCEL_ONLY": (3, "orange"),
    "POST_ONLY": (4, "yellow"),
    "INITIALIZING": (5, "blue"),
    "FINAL_SETTLEMENT": (6, "purple"),
}


#: Every error counter and what a reader calls it; the error-rate panels sum exactly these.
ERROR_PARTS: tuple[tuple[str, str], ...] = (
    ("dydx_ws_errors_total", "server error frames"),
    ("dydx_messages_invalid_total", "invalid messages"),
    ("dydx_ws_connection_failures_total", "connection failures"),
    ("dydx_subscription_failures_total", "subscription failures"),
    ("dydx_message_id_gaps_total", "message-id gaps"),
    ("dydx_trades_duplicate_total", "duplicate trades"),
)


def _error_parts() -> list[Q]:
    """Each error counter's rate over the selected exporters, named as a reader calls it."""
    return [Q(f"sum({rate(metric)})", name) for metric, name in ERROR_PARTS]


#: A count that must not be zero.
NONE_IS_RED: Thresholds = ((None, "red"), (1, "green"))


def _count(
    title: str,
    description: str,
    expr: str,
    *,
    thresholds: Thresholds = GREEN,
    width: int = 4,
) -> PanelBuilder:
    """A stat of a whole number (`expr`): how many things there are, a block height."""
    return single(title, description, "none", Q(expr), width=width, thresholds=thresholds, integer=True)


def _status_row() -> list[PanelBuilder]:
    return [
        _count(
            "Exporters up",
            "Exporters Prometheus scrapes successfully (`up`; other jobs of the Prometheus left out).",
            f"count({exporters_only(sel('up') + ' == 1')}) or vector(0)",
            thresholds=NONE_IS_RED,
        ),
        _count(
            "Ready",
            "Instances whose /readyz answers 200 (`dydx_ready`): connected, subscribed, and every channel "
            "expected to flow fresher than --data.stale-after.",
            f"count({sel('dydx_ready')} == 1) or vector(0)",
            thresholds=NONE_IS_RED,
        ),
        _count(
            "Links connected",
            "WebSocket connections currently open, over all instances (`dydx_ws_connected`).",
            f"sum({sel('dydx_ws_connected')})",
            thresholds=NONE_IS_RED,
        ),
        _count(
            "Active subscriptions",
            "Subscriptions in state active, one replica of each HA pair counted.",
            f"sum({one_replica(sel('dydx_subscriptions', ACTIVE))})",
        ),
        single(
            "Data age (worst channel)",
            "Age of the last data frame when last scraped, on the stalest channel of the stalest instance; "
            "v4_subaccounts left out (an account that does not trade is quiet on a healthy feed, and /readyz "
            "does not judge it either). Red at 30 s, the default --data.stale-after.",
            "s",
            Q(f"max({age('dydx_last_message_timestamp_seconds', QUIET_BY_NATURE)})"),
            thresholds=((None, "green"), (10, "orange"), (30, "red")),
        ),
        _count(
            "Alerts firing",
            "Alerts Prometheus reports as firing for the selected exporters (`ALERTS`).",
            # `or vector(0)`: none firing is a green 0, not "no data".
            f"count({sel('ALERTS', FIRING)}) or vector(0)",
            thresholds=((None, "green"), (1, "red")),
        ),
    ]


def _block_row() -> list[PanelBuilder]:
    return [
        _count(
            "Block height",
            "Highest block height seen on v4_block_height by any selected instance.",
            f"max({sel('dydx_block_height')})",
            width=6,
        ),
        single(
            "Block lag",
            "Scrape time minus the timestamp of the newest block: how far behind the chain the feed is.",
            "s",
            Q(f"min({age('dydx_block_timestamp_seconds')})"),
            width=6,
            thresholds=((None, "green"), (5, "orange"), (30, "red")),
        ),
        graph(
            "Block lag by instance",
            "Scrape time minus the newest block's timestamp, per instance.",
            "s",
            [
                Q(age("dydx_block_timestamp_seconds"), "{{instance}} lag"),
            ],
            width=6,
            height=4,
        ),
        graph(
            "Blocks behind the freshest instance",
            "How many blocks each instance trails the best one: non-zero means a replica is stuck.",
            "none",
            [Q(f"scalar(max({sel('dydx_block_height')})) - {sel('dydx_block_height')}", "{{instance}}")],
            width=6,
            height=4,
            min_value=0,
            integer=True,
        ),
    ]


def _status_is(status: str) -> str:
    return f'status="{status}"'


def _markets() -> list[PanelBuilder]:
    info = "dydx_market_info"
    # Each status as its number: one series per market, its value the market's status at that time.
    by_number = " or ".join(
        f"{one_replica(sel(info, _status_is(status)))} * {number}"
        for status, (number, _) in MARKET_STATUS_STATES.items()
    )
    # `@ end()`: every point of the range keeps the markets that left ACTIVE anywhere in it, so their
    # lanes show the time before the change too.
    changed = f"max_over_time({sel(info, NOT_ACTIVE)}[$__range] @ end())"
    return [
        graph(
            "Markets by status",
            "Markets the indexer lists, by status (`dydx_market_info`; HA replicas counted once, shards "
            "add up). A market keeps its series whatever its status, until the indexer stops listing it.",
            "none",
            [per("status", one_replica(sel(info)), fn="count")],
            stack=True,
            integer=True,
            height=6,
        ),
        states(
            "Market status changes",
            "Every market that was not ACTIVE at some time in the range, its status over time: each colour "
            "change is a transition. Empty while every market stays ACTIVE.",
            [Q(f"max by (market) ({by_number}) and on (market) {changed}", "{{market}}")],
            {str(number): (status, color) for status, (number, color) in MARKET_STATUS_STATES.items()},
            height=6,
        ),
    ]


def _throughput() -> list[PanelBuilder]:
    return [
        per_second(
            "Messages by channel",
            "WebSocket frames received per second, by channel (HA replicas counted once).",
            "cps",
            "dydx_ws_messages_total",
            by="channel",
            dedup=True,
            stack=True,
        ),
        per_second(
            "Updates by channel",
            "Updates applied per second: batched frames counted content by content.",
            "cps",
            "dydx_updates_total",
            by="channel",
            dedup=True,
            stack=True,
        ),
        per_second(
            "Messages by frame type",
            "Frames per second by protocol frame type (channel_data, subscribed, error, ...).",
            "cps",
            "dydx_ws_messages_total",
            by="type",
            dedup=True,
            width=8,
        ),
        per_second(
            "Bytes received",
            "WebSocket payload bytes received per second by each instance.",
            "Bps",
            "dydx_ws_received_bytes_total",
            by="instance",
            width=8,
        ),
        per_second(
            "Trades by side",
            "Live trades per second over all markets, by taker side (snapshot rows never counted).",
            "cps",
            "dydx_trades_total",
            by="side",
            dedup=True,
            width=8,
        ),
    ]


def _latency() -> list[PanelBuilder]:
    feed = "dydx_feed_latency_seconds"
    processing = "dydx_processing_seconds"
    return [
        latency(
            "Feed latency by channel",
            "Exchange timestamp to receipt: p50 and p99 per channel (trades, block height, oracle, candles).",
            feed,
            by="channel",
        ),
        latency(
            "Processing latency by channel",
            "Receipt to metrics updated: p50 and p99 per channel.",
            processing,
            by="channel",
        ),
        latency(
            "Feed latency quantiles (all channels)",
            "p50, p90 and p99 of the feed latency over every channel.",
            feed,
            qs=(0.5, 0.9, 0.99),
            width=8,
        ),
        latency(
            "Processing latency quantiles (all channels)",
            "p50, p90 and p99 of the processing time over every channel.",
            processing,
            qs=(0.5, 0.9, 0.99),
            width=8,
        ),
        latency(
            "Ping round trip",
            "Round trip of the exporter's own WebSocket pings: p50 and p99 by instance.",
            "dydx_ws_ping_rtt_seconds",
            by="instance",
            width=8,
        ),
    ]


def _errors() -> list[PanelBuilder]:
    errors = " + ".join(part.expr for part in _error_parts())
    messages = f"sum({rate('dydx_ws_messages_total')})"
    return [
        graph(
            "Error rate and its parts",
            "Errors per second, by kind. Their sum is the error rate; each part is a separate counter.",
            "cps",
            _error_parts(),
            stack=True,
        ),
        graph(
            "Error ratio",
            "Errors of every kind per received frame.",
            "percentunit",
            [Q(f"({errors}) / clamp_min({messages}, 1e-9)", "errors / frames")],
            min_value=0,
        ),
        per_second(
            "Server errors by reason",
            "Server `error` frames per second, by bounded reason.",
            "cps",
            "dydx_ws_errors_total",
            by="reason",
            width=6,
        ),
        per_second(
            "Invalid messages by reason",
            "Frames the exporter could not decode or apply, per second, by channel and reason.",
            "cps",
            "dydx_messages_invalid_total",
            by="channel, reason",
            width=6,
        ),
        per_second(
            "Connection failures by reason",
            "Failed connection attempts per second (refused, timeout, http_429, ...).",
            "cps",
            "dydx_ws_connection_failures_total",
            by="reason",
            width=6,
        ),
        per_second(
            "Subscription failures by reason",
            "Subscribe attempts the server refused, per second, by channel and reason.",
            "cps",
            "dydx_subscription_failures_total",
            by="channel, reason",
            width=6,
        ),
        event_bars(
            "Unknown schema fields by channel",
            "Fields outside the protocol's known shapes (sampled: every snapshot and one data frame in "
            "1024), by channel: the indexer changed its schema. Whole fields per minute; the exporter logs "
            "each name once (schema_unknown_field).",
            [events("dydx_schema_unknown_fields_total", by="channel")],
            width=24,
            height=6,
        ),
    ]


def _connections() -> list[PanelBuilder]:
    return [
        event_bars(
            "Disconnects by close code",
            "WebSocket closes by close code (1006: dropped without a close frame): whole events, one bar "
            "per minute (wider bars on long ranges); the legend totals the range.",
            [events("dydx_ws_disconnects_total", by="code")],
            width=8,
        ),
        event_bars(
            "Reconnects",
            "Links that came back after having been up, by instance: whole events, one bar per minute "
            "(wider bars on long ranges); the legend totals the range.",
            [events("dydx_ws_reconnects_total", by="instance")],
            width=8,
        ),
        graph(
            "Subscriptions by channel and state",
            "Subscriptions active, pending or failed, by channel (HA replicas counted once).",
            "none",
            [per("channel, state", one_replica(sel("dydx_subscriptions")))],
            width=8,
            integer=True,
        ),
        states(
            "Components",
            "Each instance's components (websocket, rest, processor): up or down.",
            [Q(sel("dydx_component_up"), "{{instance}} {{component}}")],
            UP_DOWN,
        ),
        states(
            "WebSocket links",
            "Each pooled WebSocket connection: connected or not.",
            [Q(sel("dydx_ws_connected"), "{{instance}} {{connection}}")],
            UP_DOWN,
        ),
        graph(
            "Data age by channel",
            "Age of the last data frame when last scraped, per channel (worst instance).",
            "s",
            [per("channel", age("dydx_last_message_timestamp_seconds"), fn="max")],
        ),
        listing(
            "Alerts firing",
            "Alerts currently firing for the selected exporters, with their labels.",
            [Q(sel("ALERTS", FIRING))],
        ),
    ]


def _subaccounts() -> list[PanelBuilder]:
    """Only the subaccounts named by --subaccounts (empty when the flag is not given)."""
    sub = 'subaccount=~".+"'

    def each(metric: str, what: str) -> Q:
        return Q(one_replica(sel(metric, sub)), f"{{{{subaccount}}}} {what}")

    return [
        graph(
            "Subaccount equity and free collateral",
            "Equity and free collateral (USDC) of each subaccount of --subaccounts, as of its latest "
            "snapshot (refreshed every --subaccounts.refresh-interval).",
            "currencyUSD",
            [
                each("dydx_subaccount_equity", "equity"),
                each("dydx_subaccount_free_collateral", "free collateral"),
            ],
            width=8,
        ),
        graph(
            "Subaccount open positions and orders",
            "Open perpetual positions and open orders of each subaccount of --subaccounts.",
            "none",
            [
                each("dydx_subaccount_open_positions", "positions"),
                each("dydx_subaccount_open_orders", "orders"),
            ],
            width=8,
            integer=True,
        ),
        event_bars(
            "Subaccount fills by side",
            "Fills of each subaccount of --subaccounts, by side: whole fills, one bar per minute (wider "
            "bars on long ranges); the legend totals the range.",
            [events("dydx_subaccount_fills_total", sub, by="subaccount, side", dedup=True)],
            width=8,
        ),
    ]


def sections() -> list[Section]:
    """The overview's rows, top to bottom, each (title, panels): a new row is one more entry here."""
    return [
        ("Who is at fault", who_is_at_fault_row()),
        ("Status", _status_row() + _block_row()),
        ("Markets", _markets()),
        ("Throughput", _throughput()),
        ("Latency", _latency()),
        ("Errors", _errors()),
        ("Connections and subscriptions", _connections()),
        ("Subaccounts", _subaccounts()),
    ]


def build() -> Dashboard:
    return build_dashboard(
        OVERVIEW,
        "Throughput, latency, errors and status of the dYdX v4 indexer feed as the exporter sees it. "
        f"Per-market detail: {MARKET.title}.",
        sections(),
    )
