"""Per-market state exported by the exporter (listing, oracle price, trades, the book's readout, data
age) and its families. Groups of series appear as a market is listed, subscribed to trades or to its
order book, and all go when it is forgotten."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from exporter.metrics import catalog as c
from exporter.metrics.histogram import escape, fmt
from exporter.metrics.registry import MetricSource, per_row, renders
from exporter.protocol import channels as ch


class BookReadout(Protocol):
    """What the exposition reads from an order book (exporter.state.book.Book)."""

    crossed: bool
    crossed_total: int
    #: Wall-clock time of the latest snapshot or update (0.0 before the first).
    updated_at: float
    #: Level updates applied to the book (snapshots not included).
    updates: int

    def crossed_seconds(self, now: float) -> float: ...

    def levels(self) -> tuple[int, int]: ...

    def best(self) -> tuple[float | None, float | None]: ...


class MarketMetrics:
    """Everything exported per market. The `*_at` fields are the wall-clock time of the market's latest
    frame per channel (0.0: none yet), stored on the hot path."""

    __slots__ = (
        "audit_mismatched",
        "audit_ratio",
        "audits",
        "book",
        "candle_gaps",
        "candles_at",
        "has_trades",
        "label",
        "last_trade_price",
        "listed",
        "notional",
        "oracle_at",
        "oracle_effective_at",
        "oracle_price",
        "resyncs",
        "status",
        "ticker",
        "trades",
        "trades_at",
        "volume",
    )

    def __init__(self, ticker: str) -> None:
        self.ticker = ticker
        self.label = f'market="{escape(ticker)}"'
        self.listed = False
        self.status = "UNKNOWN"
        self.oracle_price: float | None = None
        self.has_trades = False
        self.trades = [0, 0]  # index 0 buy, 1 sell (taker side)
        self.volume = [0.0, 0.0]
        self.notional = [0.0, 0.0]
        self.last_trade_price: float | None = None
        self.book: BookReadout | None = None
        self.resyncs: dict[str, int] = dict.fromkeys(c.RESYNC_REASONS, 0)
        self.trades_at = 0.0
        self.oracle_at = 0.0
        #: Exchange time (effectiveAt) of the latest oracle price update (0.0: none yet).
        self.oracle_effective_at = 0.0
        self.candles_at = 0.0
        #: Subscribed candle resolution → periods skipped (exporter.state.candles).
        self.candle_gaps: dict[str, int] = {}
        #: Book audits (exporter.state.audit): how many, mismatched levels by kind, the latest ratio.
        self.audits = 0
        self.audit_mismatched: dict[str, int] = dict.fromkeys(c.AUDIT_KINDS, 0)
        self.audit_ratio = 0.0


class MarketTable(MetricSource):
    def __init__(self) -> None:
        self._markets: dict[str, MarketMetrics] = {}
        self._sorted: list[MarketMetrics] | None = None

    def market(self, ticker: str) -> MarketMetrics:
        metrics = self._markets.get(ticker)
        if metrics is None:
            metrics = self._markets[ticker] = MarketMetrics(ticker)
            self._sorted = None
        return metrics

    @property
    def markets(self) -> Mapping[str, MarketMetrics]:
        """Every tracked market by ticker: a live read-only view for hot-path lookups (the same object for
        the table's lifetime)."""
        return self._markets

    def forget(self, ticker: str, still_listed: str | None = None) -> None:
        """Remove every series of the market (delisted or unsubscribed). A market the indexer still lists
        with status `still_listed` (unsubscribed for FINAL_SETTLEMENT, say) keeps its dydx_market_info."""
        old = self._markets.pop(ticker, None)
        if old is None:
            return
        self._sorted = None
        if still_listed is not None and old.listed:
            kept = self._markets[ticker] = MarketMetrics(ticker)
            kept.listed = True
            kept.status = still_listed

    def _by_ticker(self) -> list[MarketMetrics]:
        if self._sorted is None:
            self._sorted = sorted(self._markets.values(), key=lambda m: m.ticker)
        return self._sorted

    def _booked(self) -> list[MarketMetrics]:
        """The markets with an order book, by ticker."""
        return [m for m in self._by_ticker() if m.book is not None]

    def _books(self) -> list[tuple[MarketMetrics, BookReadout]]:
        """The same, each with its book."""
        return [(m, m.book) for m in self._by_ticker() if m.book is not None]

    # --- listing, prices, trades ----------------------------------------------------------------------
    @renders(c.MARKET_INFO)
    def _info(self, name: str, out: list[str], now: float) -> None:
        out.extend(
            f'{name}{{{m.label},status="{escape(m.status)}"}} 1\n' for m in self._by_ticker() if m.listed
        )

    _oracle = per_row(c.ORACLE_PRICE, _by_ticker, lambda m: m.oracle_price)
    _oracle_timestamp = per_row(c.ORACLE_TIMESTAMP, _by_ticker, lambda m: m.oracle_effective_at or None)
    _last_trade = per_row(c.LAST_TRADE_PRICE, _by_ticker, lambda m: m.last_trade_price)

    @renders(c.ORACLE_DEVIATION)
    def _oracle_deviation(self, name: str, out: list[str], now: float) -> None:
        for m, book in self._books():
            if m.oracle_price is None:
                continue
            bid, ask = book.best()
            if bid is not None and ask is not None:
                mid = (bid + ask) / 2.0
                out.append(f"{name}{{{m.label}}} {fmt(abs(m.oracle_price - mid) / mid)}\n")

    @renders(c.TRADES)
    def _trades(self, name: str, out: list[str], now: float) -> None:
        self._per_side(out, name, lambda m: m.trades)

    @renders(c.TRADE_VOLUME)
    def _volume(self, name: str, out: list[str], now: float) -> None:
        self._per_side(out, name, lambda m: m.volume)

    @renders(c.TRADE_NOTIONAL)
    def _notional(self, name: str, out: list[str], now: float) -> None:
        self._per_side(out, name, lambda m: m.notional)

    def _per_side(
        self, out: list[str], name: str, values: Callable[[MarketMetrics], list[int] | list[float]]
    ) -> None:
        buy, sell = c.TRADE_SIDE_LABELS
        for m in self._by_ticker():
            if m.has_trades:
                v = values(m)
                out.append(f'{name}{{{m.label},side="{buy}"}} {fmt(v[0])}\n')
                out.append(f'{name}{{{m.label},side="{sell}"}} {fmt(v[1])}\n')

    # --- the order book -------------------------------------------------------------------------------
    _crossed = per_row(c.BOOK_CROSSED, _booked, lambda m: 1 if m.book.crossed else 0)
    _crossed_episodes = per_row(c.BOOK_CROSSED_EPISODES, _booked, lambda m: m.book.crossed_total)
    _updates = per_row(c.BOOK_UPDATES, _booked, lambda m: m.book.updates)

    @renders(c.BOOK_CROSSED_SECONDS)
    def _crossed_seconds(self, name: str, out: list[str], now: float) -> None:
        out.extend(f"{name}{{{m.label}}} {fmt(book.crossed_seconds(now))}\n" for m, book in self._books())

    @renders(c.BOOK_BEST_PRICE)
    def _best(self, name: str, out: list[str], now: float) -> None:
        for m, book in self._books():
            bid, ask = book.best()
            if bid is not None:
                out.append(f'{name}{{{m.label},side="bid"}} {fmt(bid)}\n')
            if ask is not None:
                out.append(f'{name}{{{m.label},side="ask"}} {fmt(ask)}\n')

    @renders(c.BOOK_SPREAD_RATIO)
    def _spread(self, name: str, out: list[str], now: float) -> None:
        for m, book in self._books():
            bid, ask = book.best()
            if bid is not None and ask is not None:
                out.append(f"{name}{{{m.label}}} {fmt((ask - bid) / ((ask + bid) / 2.0))}\n")

    @renders(c.BOOK_LEVELS)
    def _levels(self, name: str, out: list[str], now: float) -> None:
        for m, book in self._books():
            bids, asks = book.levels()
            out.append(f'{name}{{{m.label},side="bid"}} {bids}\n{name}{{{m.label},side="ask"}} {asks}\n')

    @renders(c.BOOK_RESYNCS)
    def _resyncs(self, name: str, out: list[str], now: float) -> None:
        for m in self._booked():
            for reason, count in m.resyncs.items():
                out.append(f'{name}{{{m.label},reason="{reason}"}} {count}\n')

    _audits = per_row(c.BOOK_AUDITS, _by_ticker, lambda m: m.audits or None)
    _audit_ratio = per_row(c.BOOK_AUDIT_RATIO, _by_ticker, lambda m: m.audit_ratio if m.audits else None)

    @renders(c.BOOK_AUDIT_MISMATCHED)
    def _audit_mismatched(self, name: str, out: list[str], now: float) -> None:
        for m in self._by_ticker():
            if m.audits:
                for kind, count in m.audit_mismatched.items():
                    out.append(f'{name}{{{m.label},kind="{kind}"}} {count}\n')

    @renders(c.CANDLE_GAPS)
    def _candle_gaps(self, name: str, out: list[str], now: float) -> None:
        for m in self._by_ticker():
            for resolution, gaps in sorted(m.candle_gaps.items()):
                out.append(f'{name}{{{m.label},resolution="{escape(resolution)}"}} {gaps}\n')

    @renders(c.MARKET_LAST_UPDATE)
    def _last_update(self, name: str, out: list[str], now: float) -> None:
        for m in self._by_ticker():
            book = m.book
            for channel, at in (
                (ch.ORDERBOOK, 0.0 if book is None else book.updated_at),
                (ch.TRADES, m.trades_at),
                (ch.CANDLES, m.candles_at),
                (ch.MARKETS, m.oracle_at),
            ):
                if at:
                    out.append(f'{name}{{{m.label},channel="{channel}"}} {fmt(at)}\n')
