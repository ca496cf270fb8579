"""v4_orderbook: one L2 book per market, its snapshots, its single-level updates and its resyncs.

A snapshot carries `{price, size}` objects; an update exactly one `[price, absolute size]` pair on one
side, size "0" removing the level. Either decode path (the dict path here, the typed one in
exporter.state.fastpath) ends in `Book.update_bid` / `update_ask`: the update rule is written once. A book
whose link closes is emptied until its next snapshot, which counts as a resync (reconnect or resubscribe;
crossed or periodic when the feed asked for it through `expect_resync`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.logs import get_logger
from exporter.protocol import channels as ch
from exporter.protocol.frames import non_negative, positive
from exporter.state.book import Book
from exporter.state.context import ChannelHandler, FrameContext, Shared, one_or_both
from exporter.state.universe import valid_ticker

log = get_logger(__name__)


class OrderbookHandler(ChannelHandler):
    def __init__(self, shared: Shared) -> None:
        super().__init__(shared)
        self.books: dict[str, Book] = {}
        #: link → tickers whose book it feeds.
        self._by_link: dict[str, set[str]] = {}
        #: (channel, id) → reason of the resubscribe the feed asked for; its snapshot counts as that resync.
        self._resync_reasons: dict[tuple[str, str], str] = {}

    # --- snapshots --------------------------------------------------------------------------------------
    def snapshot(self, ctx: FrameContext, sub_id: str | None, contents: Any) -> None:
        if not valid_ticker(sub_id):
            ctx.invalid("wrong_type", sub_id)
            return
        assert sub_id is not None
        if contents.__class__ is not dict:
            ctx.invalid("wrong_type", contents)
            return
        bids = _levels(ctx, contents.get("bids"), pairs=False)
        asks = _levels(ctx, contents.get("asks"), pairs=False)
        collector = self.shared.collector
        book = self.books.get(sub_id)
        if book is None:
            book = self.books[sub_id] = Book()
            collector.market(sub_id).book = book
        reason = self._resync_reasons.pop((ch.ORDERBOOK, sub_id), None)
        if reason is None:
            reason = "resubscribe" if book.has_snapshot else "reconnect" if book.needs_resync else None
        if reason is not None:
            collector.market(sub_id).resyncs[reason] += 1
            log.info("orderbook_resync", market=sub_id, reason=reason, link=ctx.link)
        book.load_snapshot(ctx.link, bids, asks, ctx.message_id, ctx.received_at)
        self._by_link.setdefault(ctx.link, set()).add(sub_id)

    # --- updates ----------------------------------------------------------------------------------------
    def live_book(self, ctx: FrameContext, sub_id: Any, count: int = 1) -> Book | None:
        """The snapshotted book `count` updates are for; None (each counted invalid) when there is none."""
        book = self.books.get(sub_id) if sub_id.__class__ is str else None
        if book is not None and book.has_snapshot:
            return book
        reason = "unknown_market" if book is None else "no_snapshot"
        for _ in range(count):
            ctx.invalid(reason, sub_id)
        return None

    def update(self, ctx: FrameContext, sub_id: Any, contents: Any) -> None:
        self.updates(ctx, sub_id, [contents])

    def updates(self, ctx: FrameContext, sub_id: Any, items: list[Any]) -> None:
        book = self.live_book(ctx, sub_id, len(items))
        if book is None:
            return
        message_id = ctx.message_id
        now = ctx.received_at
        for contents in items:
            sides = one_or_both(ctx, contents, "bids", "asks")
            if sides is None:
                continue
            bids, asks = sides
            if bids is not None:
                for price, size in _levels(ctx, bids, pairs=True):
                    book.update_bid(price, size, message_id, now)
            if asks is not None:
                for price, size in _levels(ctx, asks, pairs=True):
                    book.update_ask(price, size, message_id, now)

    # --- lifecycle ----------------------------------------------------------------------------------------
    def unsubscribed(self, ctx: FrameContext, sub_id: str | None) -> None:
        # A refresh the feed asked for keeps the book readable until its new snapshot replaces it.
        if sub_id is None or (ch.ORDERBOOK, sub_id) in self._resync_reasons:
            return
        book = self.books.get(sub_id)
        if book is not None and book.link == ctx.link:
            book.invalidate(ctx.received_at)

    def link_closed(self, link: str, now: float) -> None:
        for ticker in self._by_link.pop(link, ()):
            book = self.books.get(ticker)
            if book is not None and book.link == link:
                book.invalidate(now)
            self._resync_reasons.pop((ch.ORDERBOOK, ticker), None)  # its next snapshot is a reconnect

    def forget(self, ticker: str) -> None:
        self.books.pop(ticker, None)
        self._resync_reasons.pop((ch.ORDERBOOK, ticker), None)

    # --- what the resyncer asks (exporter.feed.resync.BookWatch) -----------------------------------------
    def crossed_books(self) -> Mapping[str, float]:
        return {ticker: book.crossed_since for ticker, book in self.books.items() if book.crossed}

    def expect_resync(self, channel: str, sub_id: str, reason: str) -> None:
        self._resync_reasons[(channel, sub_id)] = reason


def _levels(ctx: FrameContext, levels: Any, *, pairs: bool) -> list[tuple[float, float]]:
    """One side's valid levels, in order: a snapshot's `{price, size}` objects, or an update's `[price,
    size]` pairs (`pairs`). Either way a level is a price > 0 and a size >= 0 (0 removes it), both finite;
    anything else is counted invalid and left out. A side that is absent (None) has no levels."""
    if levels is None:
        return []
    if levels.__class__ is not list:
        ctx.invalid("wrong_type", levels)
        return []
    parsed = []
    for level in levels:
        if pairs and level.__class__ is list and len(level) == 2:
            wire_price, wire_size = level
        elif not pairs and level.__class__ is dict:
            wire_price, wire_size = level.get("price"), level.get("size")
        else:
            ctx.invalid("wrong_type", level)
            continue
        price = positive(wire_price)
        size = non_negative(wire_size)
        if price is None or size is None:
            ctx.invalid("bad_number", level)
            continue
        parsed.append((price, size))
    return parsed
