"""What one refresh of `top` shows, as plain data: built from the previous and the latest scrape with
`exporter.top.stats` only, drawn by `exporter.top.layout`. Keeping the two apart lets tests check the
numbers without a terminal and the drawing without an exporter.

Metrics that only some exporters have (chain, REST and per-link heads, `dydx_ready`, data-quality
counters) are shown when the scrape has them and left out otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Final

from exporter.metrics import catalog as m
from exporter.protocol import channels as ch
from exporter.top.client import Readiness
from exporter.top.stats import Scrape, increases, rate, rates, window_quantiles

QUANTILES: Final = (0.5, 0.9, 0.99)
#: Frame types that carry data (snapshots and updates), as dydx_ws_messages_total labels them.
DATA_FRAME_TYPES: Final = (ch.T_SUBSCRIBED, ch.T_CHANNEL_DATA, ch.T_CHANNEL_BATCH_DATA)
#: Sort keys of the markets table → the MarketRow field each sorts by, largest first; `market` sorts by
#: name alone. The first is the default: the busiest books (order book level updates per second).
SORT_FIELDS: Final[dict[str, str | None]] = {
    "updates": "updates_per_s",
    "trades": "trades_per_s",
    "notional": "notional_per_s",
    "spread": "spread_ratio",
    "age": "age",
    "levels": "levels",
    "market": None,
}
SORT_KEYS: Final = tuple(SORT_FIELDS)

# Metrics of issues 14 and 15, shown only when present (their names are the contract those issues set).
CHAIN_HEIGHT: Final = "dydx_chain_block_height"
LINK_HEIGHT: Final = "dydx_link_block_height"
REST_HEIGHT: Final = "dydx_rest_block_height"
READY: Final = "dydx_ready"  # 1 exactly when /readyz answers 200 (issue 13)
#: Data-quality counters of issue 15: (title, metric, label to break it down by).
QUALITY_COUNTS: Final[tuple[tuple[str, str, str | None], ...]] = (
    ("audits", "dydx_orderbook_audits_total", None),
    ("audit mismatched levels", "dydx_orderbook_audit_mismatched_levels_total", "kind"),
    ("candle gaps", "dydx_candle_gaps_total", "resolution"),
    ("unknown fields", "dydx_schema_unknown_fields_total", "channel"),
)

Quantiles = tuple[float | None, ...]
NO_QUANTILES: Final[Quantiles] = (None,) * len(QUANTILES)


@dataclass(frozen=True, slots=True)
class Status:
    ready: bool | None  # None: /readyz could not be read
    reasons: tuple[str, ...]
    links_up: int
    links: int
    subscriptions: dict[str, int]  # state → count over all channels
    components: dict[str, bool]
    block_height: float | None
    block_age: float | None
    chain_height: float | None = None
    rest_height: float | None = None
    worst_link: tuple[str, float] | None = None  # (connection, blocks behind the freshest link)
    version: str = ""
    cpu: float | None = None  # cores used by the exporter process over the interval
    rss_bytes: float | None = None


@dataclass(frozen=True, slots=True)
class ChannelRow:
    channel: str
    updates_per_s: float | None
    frames_per_s: float | None
    age: float | None  # seconds since the channel's last snapshot or data frame
    feed: Quantiles = NO_QUANTILES
    processing: Quantiles = NO_QUANTILES


@dataclass(frozen=True, slots=True)
class Count:
    """An error counter: its total since the exporter started, and its growth over the last interval."""

    name: str
    total: float
    delta: float | None
    parts: tuple[tuple[str, float], ...] = ()  # (label value, total) of the nonzero ones, largest first


@dataclass(frozen=True, slots=True)
class MarketRow:
    market: str
    updates_per_s: float | None  # order book level updates applied per second
    trades_per_s: float | None
    notional_per_s: float | None
    spread_ratio: float | None
    levels: float | None
    age: float | None
    crossed: bool  # crossed at the scrape
    status: str = ""
    crossings: int = 0  # crossing episodes that began in the interval (a short one may be over by now)


@dataclass(frozen=True, slots=True)
class Frame:
    url: str
    wall: float
    interval: float | None  # seconds between the two scrapes, None on the first one
    status: Status
    channels: tuple[ChannelRow, ...]
    trades_per_s: dict[str, float | None]  # side → rate
    notional_per_s: dict[str, float | None]
    bytes_per_s: float | None
    errors: tuple[Count, ...]
    markets: tuple[MarketRow, ...]
    sort_key: str = SORT_KEYS[0]
    crossed_now: int = 0
    market_count: int = 0


def build(
    url: str, cur: Scrape, prev: Scrape | None, readiness: Readiness | None, sort_key: str = SORT_KEYS[0]
) -> Frame:
    """The frame for scrape `cur`; rates, deltas and quantiles need `prev` (None on the first scrape)."""
    markets = _markets(cur, prev, sort_key)
    return Frame(
        url=url,
        wall=cur.wall,
        interval=None if prev is None else cur.monotonic - prev.monotonic,
        status=_status(cur, prev, readiness),
        channels=_channels(cur, prev),
        trades_per_s=_by_side(cur, prev, m.TRADES.name),
        notional_per_s=_by_side(cur, prev, m.TRADE_NOTIONAL.name),
        bytes_per_s=None if prev is None else rate(prev, cur, m.WS_RECEIVED_BYTES.name),
        errors=_errors(cur, prev),
        markets=markets,
        sort_key=sort_key,
        crossed_now=sum(1 for row in markets if row.crossed),
        market_count=len(markets),
    )


def _status(cur: Scrape, prev: Scrape | None, readiness: Readiness | None) -> Status:
    block_ts = cur.value(m.BLOCK_TIMESTAMP.name)
    height = cur.value(m.BLOCK_HEIGHT.name)
    worst_link = None
    links = cur.by(LINK_HEIGHT, "connection")
    if links:
        freshest = max(links.values())
        name, lowest = min(links.items(), key=lambda item: item[1])
        worst_link = (name, freshest - lowest)
    chain = cur.by(CHAIN_HEIGHT, "rpc")
    versions = [labels.get("version", "") for labels, _ in cur.items(m.BUILD_INFO.name)]
    cpu_name = "process_cpu_seconds_total"
    # /readyz decides and says why; without it, the gauge that mirrors it (exporters that have one).
    ready_gauge = cur.value(READY)
    return Status(
        ready=readiness.ready if readiness else None if ready_gauge is None else ready_gauge >= 1,
        reasons=() if readiness is None else readiness.reasons,
        links_up=int(cur.total(m.WS_CONNECTED.name)),
        links=len(cur.by(m.WS_CONNECTED.name, "connection")),
        subscriptions={state: int(n) for state, n in cur.by(m.SUBSCRIPTIONS.name, "state").items()},
        components={name: value >= 1 for name, value in cur.by(m.COMPONENT_UP.name, "component").items()},
        block_height=height if height else None,
        block_age=cur.wall - block_ts if block_ts else None,
        chain_height=max(chain.values()) if chain else None,
        rest_height=cur.value(REST_HEIGHT),
        worst_link=worst_link,
        version=versions[0] if versions else "",
        cpu=rate(prev, cur, cpu_name) if prev is not None and cur.has(cpu_name) else None,
        rss_bytes=cur.value("process_resident_memory_bytes"),
    )


def _channels(cur: Scrape, prev: Scrape | None) -> tuple[ChannelRow, ...]:
    names = set(cur.by(m.UPDATES.name, "channel")) | set(cur.by(m.LAST_MESSAGE.name, "channel"))
    last = cur.by(m.LAST_MESSAGE.name, "channel")
    updates = rates(prev, cur, m.UPDATES.name, "channel") if prev is not None else {}
    frames: dict[str, float] = {}
    feed: dict[str, Quantiles] = {}
    processing: dict[str, Quantiles] = {}
    if prev is not None:
        for kind in DATA_FRAME_TYPES:
            for channel, value in rates(prev, cur, m.WS_MESSAGES.name, "channel", type=kind).items():
                frames[channel] = frames.get(channel, 0.0) + value
        feed = window_quantiles(prev, cur, m.FEED_LATENCY.name, "channel", QUANTILES)
        processing = window_quantiles(prev, cur, m.PROCESSING.name, "channel", QUANTILES)
    rows = []
    for channel in sorted(names):
        seen = last.get(channel, 0.0)
        rows.append(
            ChannelRow(
                channel=channel,
                updates_per_s=updates.get(channel, 0.0) if prev is not None else None,
                frames_per_s=frames.get(channel, 0.0) if prev is not None else None,
                age=cur.wall - seen if seen > 0 else None,
                feed=feed.get(channel, NO_QUANTILES),
                processing=processing.get(channel, NO_QUANTILES),
            )
        )
    return tuple(rows)


def _by_side(cur: Scrape, prev: Scrape | None, name: str) -> dict[str, float | None]:
    grown = rates(prev, cur, name, "side") if prev is not None else {}
    return {side: (grown.get(side, 0.0) if prev is not None else None) for side in m.TRADE_SIDE_LABELS}


def _count(cur: Scrape, prev: Scrape | None, title: str, name: str, label: str | None = None) -> Count:
    totals = cur.by(name, label) if label else {"": cur.total(name)}
    deltas = increases(prev, cur, name, label) if prev is not None else {}
    parts = tuple(
        (key, total)
        for key, total in sorted(totals.items(), key=lambda item: -item[1])
        if total > 0 and label
    )
    return Count(title, sum(totals.values()), sum(deltas.values()) if prev is not None else None, parts)


def _errors(cur: Scrape, prev: Scrape | None) -> tuple[Count, ...]:
    counts = [
        _count(cur, prev, "server errors", m.WS_ERRORS.name, "reason"),
        _count(cur, prev, "invalid frames", m.MESSAGES_INVALID.name, "reason"),
        _count(cur, prev, "connection failures", m.CONNECTION_FAILURES.name, "reason"),
        _count(cur, prev, "disconnects", m.DISCONNECTS.name, "code"),
        _count(cur, prev, "reconnects", m.RECONNECTS.name),
        _count(cur, prev, "subscription failures", m.SUBSCRIPTION_FAILURES.name, "reason"),
        _count(cur, prev, "gaps", m.MESSAGE_ID_GAPS.name),
        _count(cur, prev, "duplicates", m.TRADES_DUPLICATE.name),
        _count(cur, prev, "crossed episodes", m.BOOK_CROSSED_EPISODES.name),
        _count(cur, prev, "resyncs", m.BOOK_RESYNCS.name, "reason"),
    ]
    counts.extend(
        _count(cur, prev, title, name, label) for title, name, label in QUALITY_COUNTS if cur.has(name)
    )
    return tuple(counts)


def _markets(cur: Scrape, prev: Scrape | None, sort_key: str) -> tuple[MarketRow, ...]:
    status = {
        labels.get("market", ""): labels.get("status", "") for labels, _ in cur.items(m.MARKET_INFO.name)
    }
    updates = rates(prev, cur, m.BOOK_UPDATES.name, "market") if prev is not None else {}
    trades = rates(prev, cur, m.TRADES.name, "market") if prev is not None else {}
    notional = rates(prev, cur, m.TRADE_NOTIONAL.name, "market") if prev is not None else {}
    spread = cur.by(m.BOOK_SPREAD_RATIO.name, "market")
    levels = cur.by(m.BOOK_LEVELS.name, "market")
    crossed = cur.by(m.BOOK_CROSSED.name, "market")
    crossings = increases(prev, cur, m.BOOK_CROSSED_EPISODES.name, "market") if prev is not None else {}
    freshest: dict[str, float] = {}
    for labels, value in cur.items(m.MARKET_LAST_UPDATE.name):
        market = labels.get("market", "")
        freshest[market] = max(freshest.get(market, 0.0), value)
    names = set(status) | set(levels) | set(freshest) | set(cur.by(m.TRADES.name, "market"))
    rows = [
        MarketRow(
            market=name,
            updates_per_s=updates.get(name, 0.0) if prev is not None else None,
            trades_per_s=trades.get(name, 0.0) if prev is not None else None,
            notional_per_s=notional.get(name, 0.0) if prev is not None else None,
            spread_ratio=spread.get(name),
            levels=levels.get(name),
            age=cur.wall - freshest[name] if freshest.get(name) else None,
            crossed=crossed.get(name, 0.0) >= 1,
            status=status.get(name, ""),
            crossings=round(crossings.get(name, 0.0)),
        )
        for name in names
        if name
    ]
    return tuple(sort_markets(rows, sort_key))


def sort_markets(rows: list[MarketRow], key: str) -> list[MarketRow]:
    """Crossed books first (what an operator must see), then books that crossed during the interval, then
    by `key`: busiest, widest spread, stalest or deepest first; `market` alphabetically. Ties and missing
    values go last, by name."""
    if key not in SORT_FIELDS:
        raise ValueError(f"sort key must be one of {', '.join(SORT_KEYS)}, not {key!r}")
    rows = sorted(rows, key=lambda row: row.market)
    field = SORT_FIELDS[key]
    if field is not None:
        value = attrgetter(field)
        rows.sort(key=lambda row: (value(row) is None, -(value(row) or 0.0)))
    rows.sort(key=lambda row: (not row.crossed, row.crossings == 0))
    return rows
