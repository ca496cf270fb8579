"""Ground truth: what the simulator published, exposed at its own `/metrics`.

The hot path bumps plain ints in `Stats`; a custom collector turns them into metric families at scrape
time, in the simulator's own CollectorRegistry (never the global one).

`Ledger` is the other half, served as JSON at GET /control/truth: what a perfect consumer holds right now
(books, best prices, oracle prices, last trade, trade tallies, block height, candles, subaccounts, updates
delivered per channel), taken from the frames queued to subscribers, so it cannot drift from the wire.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.protocol import channels as ch
from exporter.simulator.levels import LevelBook

#: `channel` label of frames that belong to no channel (connected, errors without one, malformed).
NO_CHANNEL = "none"


@dataclass
class Stats:
    frames: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    updates: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    trades: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    connections_opened: int = 0
    closes: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    slow_consumers_cut: int = 0
    message_ids_skipped: int = 0
    handshakes_rejected: int = 0
    client_messages: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    rest_requests: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))


@dataclass(frozen=True)
class Live:
    """Gauges read at scrape time from the running server."""

    connections: Callable[[], int]
    subscriptions: Callable[[], dict[str, int]]
    block_height: Callable[[], int]
    markets: Callable[[], int]
    paused: Callable[[], bool]
    faults: Callable[[], dict[str, int]]
    queued_bytes: Callable[[], int]


class _Family(NamedTuple):
    """One family at /metrics: its value is a number, or for a labelled one its samples, (label value or
    tuple of values, number) pairs."""

    kind: type[CounterMetricFamily | GaugeMetricFamily]
    name: str
    help: str
    labels: tuple[str, ...]
    value: Any

    def metric(self) -> Metric:
        if not self.labels:
            return self.kind(self.name, self.help, self.value)
        family = self.kind(self.name, self.help, labels=self.labels)
        for key, n in self.value:
            family.add_metric(list(key) if isinstance(key, tuple) else [key], n)
        return family


class TruthCollector(Collector):
    def __init__(self, stats: Stats, live: Live) -> None:
        self._stats = stats
        self._live = live

    def collect(self) -> Iterator[Metric]:
        s, live = self._stats, self._live
        families = (  # in the order served
            _Family(
                CounterMetricFamily,
                "dydx_simulator_frames_sent",
                "Frames queued to clients, by channel and frame type (type malformed for injected garbage).",
                ("channel", "type"),
                sorted(s.frames.items()),
            ),
            _Family(
                CounterMetricFamily,
                "dydx_simulator_updates_published",
                "Updates produced by the market, per channel, whether or not anyone was subscribed.",
                ("channel",),
                _per_channel(s.updates),
            ),
            _Family(
                CounterMetricFamily,
                "dydx_simulator_trades_published",
                "Live trades published on v4_trades (snapshot rows excluded), once per trade.",
                ("market",),
                sorted(s.trades.items()),
            ),
            _Family(
                GaugeMetricFamily,
                "dydx_simulator_connections",
                "Open WebSocket connections.",
                (),
                live.connections(),
            ),
            _Family(
                CounterMetricFamily,
                "dydx_simulator_connections_opened",
                "WebSocket handshakes accepted.",
                (),
                s.connections_opened,
            ),
            _Family(
                CounterMetricFamily,
                "dydx_simulator_connections_closed",
                "WebSocket connections ended, by close code (1006: dropped without a close frame).",
                ("code",),
                sorted(s.closes.items()),
            ),
            _Family(
                GaugeMetricFamily,
                "dydx_simulator_subscriptions",
                "Active subscriptions, per channel.",
                ("channel",),
                _per_channel(live.subscriptions()),
            ),
            _Family(
                GaugeMetricFamily,
                "dydx_simulator_block_height",
                "Latest block height.",
                (),
                live.block_height(),
            ),
            _Family(GaugeMetricFamily, "dydx_simulator_markets", "Listed markets.", (), live.markets()),
            _Family(
                GaugeMetricFamily,
                "dydx_simulator_paused",
                "1 while market events are paused.",
                (),
                int(live.paused()),
            ),
            _Family(
                GaugeMetricFamily,
                "dydx_simulator_faults_active",
                "Active faults, by kind.",
                ("kind",),
                sorted(live.faults().items()),
            ),
            _Family(
                CounterMetricFamily,
                "dydx_simulator_slow_consumers_cut",
                "Connections dropped because their send buffer overflowed.",
                (),
                s.slow_consumers_cut,
            ),
            _Family(
                GaugeMetricFamily,
                "dydx_simulator_send_queue_bytes",
                "Bytes queued for clients, all connections.",
                (),
                live.queued_bytes(),
            ),
            _Family(
                CounterMetricFamily,
                "dydx_simulator_message_ids_skipped",
                "Message ids skipped by gap faults.",
                (),
                s.message_ids_skipped,
            ),
            _Family(
                CounterMetricFamily,
                "dydx_simulator_handshakes_rejected",
                "WebSocket handshakes refused by reject faults.",
                (),
                s.handshakes_rejected,
            ),
            _Family(
                CounterMetricFamily,
                "dydx_simulator_client_messages",
                "Client messages received, by outcome (subscribe, unsubscribe, ping, invalid, error).",
                ("kind",),
                sorted(s.client_messages.items()),
            ),
            _Family(
                CounterMetricFamily,
                "dydx_simulator_rest_requests",
                "REST requests, by route and status code.",
                ("endpoint", "code"),
                sorted(s.rest_requests.items()),
            ),
        )
        for family in families:
            yield family.metric()


def _per_channel(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """A count for every channel of the protocol, 0 for one not in `counts`."""
    return [(channel, counts.get(channel, 0)) for channel in ch.ALL_CHANNELS]


def build_registry(stats: Stats, live: Live) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TruthCollector(stats, live))
    return registry


# ---- what a perfect consumer holds: GET /control/truth ------------------------------------------------
#: Order statuses a consumer counts as open (as exporter.state.subaccounts does, from the protocol).
_OPEN_ORDER_STATUSES = frozenset({"OPEN", "UNTRIGGERED", "BEST_EFFORT_OPENED"})
_SIDES = ("BUY", "SELL")
#: Trade ids remembered per market to drop a batched re-delivery of a trade already in a snapshot.
_RECENT_TRADE_IDS = 4096


def _price_key(level: tuple[str, str]) -> Decimal:
    return Decimal(level[0])


@dataclass(slots=True)
class _TradeTally:
    count: int = 0
    volume: Decimal = field(default_factory=Decimal)
    notional: Decimal = field(default_factory=Decimal)


class _RecentIds:
    """Trade ids seen lately: membership in O(1), at most _RECENT_TRADE_IDS, the oldest forgotten first."""

    __slots__ = ("_order", "_seen")

    def __init__(self) -> None:
        self._order: deque[str] = deque()
        self._seen: set[str] = set()

    def add(self, trade_id: str) -> bool:
        """Remember `trade_id`; False if it was already known."""
        if trade_id in self._seen:
            return False
        self._seen.add(trade_id)
        self._order.append(trade_id)
        if len(self._order) > _RECENT_TRADE_IDS:
            self._seen.discard(self._order.popleft())
        return True


@dataclass(slots=True)
class _MarketTruth:
    #: The book as delivered (snapshot objects, then [price, size] updates); None before a snapshot.
    book: LevelBook | None = None
    #: Levels in the order book updates delivered after a snapshot, once per subscriber (what
    #: dydx_orderbook_updates_total counts).
    book_updates: int = 0
    oracle_price: str | None = None
    last_trade: dict[str, Any] | None = None
    tallies: dict[str, _TradeTally] = field(default_factory=lambda: {s: _TradeTally() for s in _SIDES})
    trade_ids: _RecentIds = field(default_factory=_RecentIds)
    candles: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(slots=True)
class _SubaccountTruth:
    equity: str | None = None
    free_collateral: str | None = None
    open_orders: set[str] = field(default_factory=set)


class Ledger:
    """Ground truth taken from the wire: every snapshot served to a subscription and every update delivered
    to at least one subscriber, applied in the order the frames were queued.

    The hub calls `delivered` for an update queued to unbatched subscribers, `buffered` / `flushed` for one
    that waits in a batch (applied when the batch goes out, after any snapshot served meanwhile, as a
    batched consumer sees it), and the session calls `snapshot` when a subscription's snapshot is sent.
    Updates nobody received (no subscriber, a stall fault) never count, so after a pause the ledger equals
    what a consumer subscribed since its latest snapshot holds. With several consumers of one book the
    latest snapshot served wins (the tests run one exporter per simulator). An order book holds the
    snapshot's top levels (the REST shape: 100 per side, uncrossed) plus every level updated since, crossed
    ghost levels included: exactly what the indexer lets a subscriber hold. A frame queued to a connection
    that a fault then cuts counts as delivered though it never arrives: after such faults, compare state
    (books, prices, height), not counters or the last trade of a market that has not traded since.
    """

    def __init__(self) -> None:
        self.markets: defaultdict[str, _MarketTruth] = defaultdict(_MarketTruth)
        self.subaccounts: defaultdict[str, _SubaccountTruth] = defaultdict(_SubaccountTruth)
        self.block_height: str | None = None
        self.block_time: str | None = None
        #: Updates received by subscribers, per channel, counted once per subscriber (each element of a
        #: batch counts once, as dydx_updates_total does).
        self.updates: defaultdict[str, int] = defaultdict(int)
        self._pending: dict[tuple[str, str | None, bytes], list[Any]] = {}

    # ---- recording (hot path: no parsing beyond what the update is) ----
    def delivered(self, channel: str, key: str | None, contents: Any, subscribers: int) -> None:
        self.updates[channel] += subscribers
        self._apply(channel, key, contents, subscribers)

    def buffered(self, channel: str, key: str | None, extra: bytes, contents: Any) -> None:
        self._pending.setdefault((channel, key, extra), []).append(contents)

    def flushed(self, channel: str, key: str | None, extra: bytes, subscribers: int) -> None:
        items = self._pending.pop((channel, key, extra), None)
        if items is None or not subscribers:
            return
        self.updates[channel] += subscribers * len(items)
        for contents in items:
            self._apply(channel, key, contents, subscribers)

    def snapshot(self, channel: str, key: str | None, contents: Any) -> None:
        if not isinstance(contents, dict):
            return
        if channel == ch.ORDERBOOK and key is not None:
            market = self.markets[key]
            market.book = LevelBook()
            market.book.reset(contents)
        elif channel == ch.TRADES and key is not None:
            seen = self.markets[key].trade_ids
            for row in contents.get("trades", ()):
                seen.add(row["id"])
        elif channel == ch.MARKETS:
            for ticker, row in contents.get("markets", {}).items():
                if row.get("oraclePrice") is not None:
                    self.markets[ticker].oracle_price = row["oraclePrice"]
        elif channel == ch.BLOCK_HEIGHT:
            self.block_height, self.block_time = contents.get("height"), contents.get("time")
        elif channel == ch.CANDLES and key is not None:
            ticker, _, resolution = key.rpartition("/")
            candles = contents.get("candles") or []
            if candles:
                self.markets[ticker].candles[resolution] = candles[0]
        elif channel == ch.SUBACCOUNTS and key is not None:
            account = contents.get("subaccount")
            sub = self.subaccounts[key]
            if account is None:
                sub.equity = sub.free_collateral = None
                sub.open_orders = set()
                return
            sub.equity, sub.free_collateral = account.get("equity"), account.get("freeCollateral")
            sub.open_orders = set()
            self._orders(sub, contents.get("orders") or ())

    def _apply(self, channel: str, key: str | None, contents: Any, subscribers: int) -> None:
        if channel == ch.ORDERBOOK:
            market = self.markets[key or ""]
            if market.book is not None:
                market.book.apply(contents)
                levels = sum(len(side) for side in (contents.get("bids"), contents.get("asks")) if side)
                market.book_updates += subscribers * levels
        elif channel == ch.TRADES:
            self._trades(self.markets[key or ""], contents.get("trades", ()))
        elif channel == ch.MARKETS:
            for ticker, row in (contents.get("oraclePrices") or {}).items():
                self.markets[ticker].oracle_price = row["oraclePrice"]
        elif channel == ch.BLOCK_HEIGHT:
            self.block_height, self.block_time = contents.get("blockHeight"), contents.get("time")
        elif channel == ch.CANDLES and key is not None:
            ticker, _, resolution = key.rpartition("/")
            self.markets[ticker].candles[resolution] = contents
        elif channel == ch.SUBACCOUNTS and key is not None:
            self._orders(self.subaccounts[key], contents.get("orders") or ())

    @staticmethod
    def _trades(market: _MarketTruth, rows: Any) -> None:
        for row in rows:
            if not market.trade_ids.add(row["id"]):
                continue  # a batched subscriber gets trades buffered before its snapshot again
            price, size = Decimal(row["price"]), Decimal(row["size"])
            tally = market.tallies[row["side"]]
            tally.count += 1
            tally.volume += size
            tally.notional += price * size
            market.last_trade = {k: row[k] for k in ("id", "price", "size", "side", "createdAt")}

    @staticmethod
    def _orders(sub: _SubaccountTruth, orders: Any) -> None:
        for order in orders:
            if order.get("status") in _OPEN_ORDER_STATUSES:
                sub.open_orders.add(order["id"])
            else:
                sub.open_orders.discard(order["id"])

    # ---- reporting ----
    def report(
        self,
        tickers: Iterable[str],
        rest_orderbook: Callable[[str], Mapping[str, Any] | None],
        paused: bool,
    ) -> dict[str, Any]:
        """The JSON of GET /control/truth for `tickers` (listed markets). A book never snapshotted by any
        subscriber is the one a consumer subscribing now would get (`"delivered": false`)."""
        return {
            "paused": paused,
            "block_height": None if self.block_height is None else int(self.block_height),
            "block_time": self.block_time,
            "updates_delivered": {channel: self.updates.get(channel, 0) for channel in ch.ALL_CHANNELS},
            "markets": {t: self._market_report(t, rest_orderbook) for t in tickers},
            "subaccounts": {
                key: {
                    "equity": sub.equity,
                    "free_collateral": sub.free_collateral,
                    "open_orders": len(sub.open_orders),
                }
                for key, sub in sorted(self.subaccounts.items())
            },
        }

    def _market_report(
        self, ticker: str, rest_orderbook: Callable[[str], Mapping[str, Any] | None]
    ) -> dict[str, Any]:
        market = self.markets.get(ticker) or _MarketTruth()
        delivered = market.book is not None
        if market.book is not None:
            bids = sorted(market.book.bids.items(), key=_price_key, reverse=True)
            asks = sorted(market.book.asks.items(), key=_price_key)
        else:
            snapshot = rest_orderbook(ticker) or {}
            bids = [(lv["price"], lv["size"]) for lv in snapshot.get("bids", ())]
            asks = [(lv["price"], lv["size"]) for lv in snapshot.get("asks", ())]
        best_bid = bids[0][0] if bids else None
        best_ask = asks[0][0] if asks else None
        return {
            "book": {"delivered": delivered, "bids": bids, "asks": asks},
            "orderbook_updates": market.book_updates,
            "best_bid": best_bid,
            "best_ask": best_ask,
            "crossed": best_bid is not None
            and best_ask is not None
            and Decimal(best_bid) >= Decimal(best_ask),
            "oracle_price": market.oracle_price,
            "last_trade": market.last_trade,
            "trades": {
                side: {"count": t.count, "volume": str(t.volume), "notional": str(t.notional)}
                for side, t in market.tallies.items()
            },
            "candles": dict(sorted(market.candles.items())),
        }
