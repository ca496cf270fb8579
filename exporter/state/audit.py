"""Book audits: is the order book the exporter holds the book the indexer has, when nothing looks wrong?

A wrong level that never crosses (a replaced order whose removal was never sent: reference §8, v4-chain PR
#2855) leaves every book metric looking healthy. The only witness is a fresh snapshot. The auditor
(exporter.feed.audit) fetches the REST book while the subscription stays live, so the held book never
misses an update; what the two may legitimately disagree on is confined to the levels updated around the
fetch (REST reads a replica that trails the stream, and an update in flight may land on either side of
it). `begin` starts recording the prices updated on the book (Book.touched, one check per update), the
auditor waits --orderbook.audit-window (5 s: the snapshot fetch bound of reference §4.3, which also covers
REST's replica lag, normally under 1 s), fetches, waits as long again, and `finish` compares every level the
snapshot's depth covers (top SNAPSHOT_DEPTH per side), and the held book's own (a level behind the far
end of its last snapshot that no update named was never sent), that was not touched meanwhile:

- missing: in the snapshot, not held; extra: held, not in the snapshot; size: both, sizes differ.

A book that was re-snapshotted, emptied (its link closed), forgotten or crossed meanwhile is not audited:
crossed books are the crossed resync's business, and a new snapshot already replaced what was held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from exporter.logs import get_logger
from exporter.metrics.collector import Collector
from exporter.state.book import SNAPSHOT_DEPTH, Book, Side

log = get_logger(__name__)


Levels = list[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class AuditResult:
    missing: int
    extra: int
    size: int
    compared: int

    @property
    def mismatched(self) -> int:
        return self.missing + self.extra + self.size

    @property
    def ratio(self) -> float:
        return self.mismatched / self.compared if self.compared else 0.0


def compare_side(
    held: Side, snapshot: Levels, touched: set[float], *, bid: bool, known_from: float
) -> AuditResult:
    """One side: the held levels against the snapshot's, untouched levels only, within what both know:
    the snapshot's depth, and the held book's (`known_from`, the far end of its own last snapshot: a
    level behind it that no update named was never sent to the exporter)."""
    snap = dict(snapshot)
    edge = known_from
    if len(snap) >= SNAPSHOT_DEPTH:
        edge = max(edge, min(snap)) if bid else min(edge, max(snap))
    beyond: Callable[[float], bool] = edge.__gt__ if bid else edge.__lt__
    missing = extra = size = compared = 0
    sizes = held.sizes
    for price, snap_size in snap.items():
        if price in touched or beyond(price):
            continue
        compared += 1
        held_size = sizes.get(price)
        if held_size is None:
            missing += 1
        elif held_size != snap_size:
            size += 1
    for price in sizes:
        if price in snap or price in touched or beyond(price):
            continue
        compared += 1
        extra += 1
    return AuditResult(missing, extra, size, compared)


def compare(book: Book, bids: Levels, asks: Levels, touched: set[float]) -> AuditResult:
    low_bid, high_ask = book.known_from
    b = compare_side(book.bids, bids, touched, bid=True, known_from=low_bid)
    a = compare_side(book.asks, asks, touched, bid=False, known_from=high_ask)
    return AuditResult(b.missing + a.missing, b.extra + a.extra, b.size + a.size, b.compared + a.compared)


class BookAudits:
    """Begins and finishes audits of the books `books` (OrderbookHandler.books) and counts them."""

    def __init__(self, books: dict[str, Book], collector: Collector) -> None:
        self._books = books
        self._collector = collector

    def begin(self, ticker: str) -> bool:
        """Start watching the market's book; False when it cannot be audited now (none, not live,
        crossed, or already watched)."""
        book = self._books.get(ticker)
        if book is None or not book.has_snapshot or book.crossed or book.touched is not None:
            return False
        book.touched = set()
        return True

    def abandon(self, tickers: Iterable[str]) -> None:
        for ticker in tickers:
            book = self._books.get(ticker)
            if book is not None:
                book.touched = None

    def finish(self, ticker: str, bids: Levels, asks: Levels) -> AuditResult | None:
        """Compare and count; None when the watch ended meanwhile (new snapshot, link closed, forgotten)
        or the book is crossed now."""
        book = self._books.get(ticker)
        if book is None or book.touched is None:
            return None
        touched, book.touched = book.touched, None
        if book.crossed:
            return None
        result = compare(book, bids, asks, touched)
        market = self._collector.existing_market(ticker)
        if market is None:
            return None
        market.audits += 1
        counts = market.audit_mismatched
        counts["missing"] += result.missing
        counts["extra"] += result.extra
        counts["size"] += result.size
        market.audit_ratio = result.ratio
        if not result.mismatched:
            log.debug("orderbook_audit", market=ticker, compared=result.compared, left_out=len(touched))
        else:
            log.warning(
                "orderbook_audit_mismatch",
                market=ticker,
                missing=result.missing,
                extra=result.extra,
                size=result.size,
                compared=result.compared,
                left_out=len(touched),
            )
        return result
