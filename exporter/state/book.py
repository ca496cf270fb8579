"""L2 order book of one market: snapshot (objects) plus single-level absolute updates (arrays).

Each side keeps price → size and price → message_id of the level's last update, plus its prices sorted
ascending, so the top of book is an index away after every update. Crossing is judged on the book as
delivered (it happens on the real feed: proposer-specific books, unkeyed Kafka, ghost levels the uncross
task deletes silently); best prices and the spread come from the uncrossed view computed with the official
client recipe, only when asked (at scrape time).
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Callable
from typing import Final

#: A snapshot carries at most this many levels per side (reference §3.1): past its far end, a level is
#: known only once an update names it.
SNAPSHOT_DEPTH: Final = 100
#: A side never holds more levels than this; past it the level farthest from the top is dropped. The real
#: book sends updates beyond the 100-level snapshot, but a side of thousands of levels is a runaway.
MAX_LEVELS_PER_SIDE: Final = 5000


class Side:
    __slots__ = ("drop_low", "ids", "prices", "sizes")

    def __init__(self, *, drop_low: bool) -> None:
        #: Past MAX_LEVELS_PER_SIDE, drop the lowest price (bids) or the highest (asks): the far end.
        self.drop_low = drop_low
        self.sizes: dict[float, float] = {}
        self.ids: dict[float, int] = {}
        self.prices: list[float] = []  # ascending

    def clear(self) -> None:
        self.sizes.clear()
        self.ids.clear()
        self.prices.clear()

    def set(self, price: float, size: float, message_id: int) -> None:
        sizes = self.sizes
        if size == 0.0:
            if price in sizes:
                del sizes[price]
                del self.ids[price]
                prices = self.prices
                del prices[bisect_left(prices, price)]
            return
        if price not in sizes:
            insort(self.prices, price)
            if len(self.prices) > MAX_LEVELS_PER_SIDE:
                far = self.prices.pop(0 if self.drop_low else -1)
                if far == price:
                    return
                del sizes[far]
                del self.ids[far]
        sizes[price] = size
        self.ids[price] = message_id


def _side_update(bid: bool) -> Callable[[Book, float, float, int, float], None]:
    """Book.update_bid / update_ask: one source for both sides (a method per side, not a shared call, as
    it runs for every order book update)."""

    def update(book: Book, price: float, size: float, message_id: int, now: float) -> None:
        """The update rule: the level's new absolute size (0 removes it), from the frame `message_id`
        received at `now` (which stamps the book's freshness). Prices > 0 and sizes >= 0, both finite."""
        # Side.set's common cases are inlined: a size change of an existing level moves no price (the
        # crossing cannot change) and costs two dict writes.
        book.updated_at = now
        book.updates += 1
        touched = book.touched
        if touched is not None:  # an audit is watching (exporter.state.audit): one check per update
            touched.add(price)
        side = book.bids if bid else book.asks
        sizes = side.sizes
        if price in sizes:
            if size != 0.0:
                sizes[price] = size
                side.ids[price] = message_id
                return
            del sizes[price]
            del side.ids[price]
            prices = side.prices
            del prices[bisect_left(prices, price)]
        elif size == 0.0:
            return
        else:
            side.set(price, size, message_id)
        bid_prices = book.bids.prices
        ask_prices = book.asks.prices
        if (bool(bid_prices) and bool(ask_prices) and bid_prices[-1] >= ask_prices[0]) is not book.crossed:
            book._check_crossed(now)

    return update


class Book:
    """Implements metrics.markets.BookReadout. `received_at` times are wall clock (time.time())."""

    __slots__ = (
        "_crossed_accrued",
        "_crossed_reported",
        "asks",
        "bids",
        "crossed",
        "crossed_since",
        "crossed_total",
        "has_snapshot",
        "known_from",
        "link",
        "needs_resync",
        "touched",
        "updated_at",
        "updates",
    )

    def __init__(self) -> None:
        self.bids = Side(drop_low=True)
        self.asks = Side(drop_low=False)
        self.has_snapshot = False
        #: The link whose frames feed this book; its close makes the book stale until re-snapshotted.
        self.link: str | None = None
        self.needs_resync = False
        self.crossed = False
        self.crossed_since = 0.0
        self.crossed_total = 0
        self._crossed_accrued = 0.0
        self._crossed_reported = 0.0
        #: Wall-clock time of the latest snapshot or update (load_snapshot, update_bid/ask).
        self.updated_at = 0.0
        #: Level updates applied by update_bid/ask since the book was created (dydx_orderbook_updates_total).
        self.updates = 0
        #: While an audit watches the book: the prices updated since it began. A new snapshot or an
        #: invalidation ends the watch (None), which abandons the audit.
        self.touched: set[float] | None = None
        #: (lowest bid, highest ask) of the latest snapshot when it was full (SNAPSHOT_DEPTH levels; else
        #: 0 and inf): a level beyond it that no update named may exist unseen.
        self.known_from = (0.0, math.inf)

    # --- feeding --------------------------------------------------------------------------------------
    def load_snapshot(
        self,
        link: str,
        bids: list[tuple[float, float]],
        asks: list[tuple[float, float]],
        message_id: int,
        now: float,
    ) -> None:
        self.bids.clear()
        self.asks.clear()
        for price, size in bids:
            self.bids.set(price, size, message_id)
        for price, size in asks:
            self.asks.set(price, size, message_id)
        self.known_from = (
            min(price for price, _ in bids) if len(bids) >= SNAPSHOT_DEPTH else 0.0,
            max(price for price, _ in asks) if len(asks) >= SNAPSHOT_DEPTH else math.inf,
        )
        self.has_snapshot = True
        self.needs_resync = False
        self.touched = None
        self.link = link
        self.updated_at = now
        self._check_crossed(now)

    #: The update rule, one source for both sides (_side_update).
    update_bid = _side_update(bid=True)
    update_ask = _side_update(bid=False)

    def invalidate(self, now: float) -> None:
        """The feeding link is gone: empty the book (its levels are no longer maintained) and wait for a
        fresh snapshot, which will count as a resync."""
        self.bids.clear()
        self.asks.clear()
        self.has_snapshot = False
        self.needs_resync = True
        self.touched = None
        self.link = None
        self._check_crossed(now)

    def _check_crossed(self, now: float) -> None:
        bid_prices = self.bids.prices
        ask_prices = self.asks.prices
        crossed = bool(bid_prices) and bool(ask_prices) and bid_prices[-1] >= ask_prices[0]
        if crossed is self.crossed:
            return
        if crossed:
            self.crossed_total += 1
            self.crossed_since = now
        elif now > self.crossed_since:
            self._crossed_accrued += now - self.crossed_since
        self.crossed = crossed

    # --- reading (BookReadout) ------------------------------------------------------------------------
    def crossed_seconds(self, now: float) -> float:
        """Time spent crossed, including an episode still running; never decreases."""
        total = self._crossed_accrued
        if self.crossed and now > self.crossed_since:
            total += now - self.crossed_since
        if total < self._crossed_reported:
            total = self._crossed_reported
        self._crossed_reported = total
        return total

    def levels(self) -> tuple[int, int]:
        return len(self.bids.prices), len(self.asks.prices)

    def best(self) -> tuple[float | None, float | None]:
        """Best bid and ask of the uncrossed view (None for an empty side)."""
        bid_prices = self.bids.prices
        ask_prices = self.asks.prices
        if not bid_prices or not ask_prices:
            return (bid_prices[-1] if bid_prices else None), (ask_prices[0] if ask_prices else None)
        if bid_prices[-1] < ask_prices[0]:
            return bid_prices[-1], ask_prices[0]
        return self._uncross()

    def _uncross(self) -> tuple[float | None, float | None]:
        """Official recipe (docs "How to uncross the orderbook", v4-clients PR #301): while crossed, drop
        the top level whose last update is older by message_id; on equal ids subtract the smaller size from
        the larger and drop the smaller (both when equal). Works on indices, the book is left as is."""
        bid_prices, ask_prices = self.bids.prices, self.asks.prices
        bid_sizes, ask_sizes = self.bids.sizes, self.asks.sizes
        bid_ids, ask_ids = self.bids.ids, self.asks.ids
        bi = len(bid_prices) - 1
        ai = 0
        bid_left = bid_sizes[bid_prices[bi]]
        ask_left = ask_sizes[ask_prices[ai]]
        n_asks = len(ask_prices)
        while bi >= 0 and ai < n_asks and bid_prices[bi] >= ask_prices[ai]:
            bid_id = bid_ids[bid_prices[bi]]
            ask_id = ask_ids[ask_prices[ai]]
            drop_bid = drop_ask = False
            if bid_id < ask_id:
                drop_bid = True
            elif ask_id < bid_id:
                drop_ask = True
            elif bid_left > ask_left:
                bid_left -= ask_left
                drop_ask = True
            elif ask_left > bid_left:
                ask_left -= bid_left
                drop_bid = True
            else:
                drop_bid = drop_ask = True
            if drop_bid:
                bi -= 1
                if bi >= 0:
                    bid_left = bid_sizes[bid_prices[bi]]
            if drop_ask:
                ai += 1
                if ai < n_asks:
                    ask_left = ask_sizes[ask_prices[ai]]
        return (bid_prices[bi] if bi >= 0 else None), (ask_prices[ai] if ai < n_asks else None)
