"""v4_trades: live trades counted per market and side, de-duplicated by event id in small constant memory.

Duplicates happen around subscribe time (a snapshot row delivered again as an update, a batched buffer
replayed) and across a resubscribe. A trade id is the 24-hex eventId: block height, txIndex + 2 and
eventIndex, 8 hex digits each, so read as an integer (96 bits) ids order the way trades happen. That lets
each market keep only a short window of recent ids plus a floor:

- every id ever remembered is either still in the window or at or below `floor` (the highest id the window
  has let go of), so a repeated id is always recognised, however old;
- an id above the floor that is not in the window is new, even when it arrives out of order;
- an id at or below the floor that is not in the window is taken as a duplicate. This is the only
  approximation: a genuinely new trade arriving behind more than `capacity` newer ones (never seen on the
  feed, which sends each block's fills in one message, oldest first) would be dropped as a duplicate.

A snapshot (up to 1000 rows) only needs its newest `capacity` rows in the window: anything older is below
the floor it leaves, which is what makes a replay of old snapshot rows a duplicate. Ids that are not 24 hex
digits (no real indexer sends them) are remembered as strings in the same window, without the floor.

`RecentIds` is the plain window for ids without an order (subaccount fill ids).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any, Final

from exporter.metrics.markets import MarketMetrics
from exporter.protocol.frames import positive
from exporter.state.context import ChannelHandler, FrameContext, Shared
from exporter.state.universe import valid_ticker

#: Ids per market in the window: far more than the feed ever delivers out of order (one message per market
#: per block, fills oldest first), and small enough that 267 full windows cost 3.9 MB.
TRADE_WINDOW: Final = 128
RECENT_IDS_PER_MARKET: Final = 2048
_EVENT_ID_LENGTH: Final = 24
#: Taker side → index of the per-side counters (0 buy, 1 sell).
SIDE_INDEX: Final = {"BUY": 0, "SELL": 1}
#: Longer ids are refused (a real one is 24 characters).
MAX_ID_LENGTH: Final = 64


def trade_key(trade_id: str) -> int | str:
    """The id as an ordered integer, or the string itself when it is not a 24-hex eventId."""
    if len(trade_id) == _EVENT_ID_LENGTH:
        try:
            return int(trade_id, 16)
        except ValueError:
            pass
    return trade_id


class TradeIds:
    """The trade ids of one market: a fixed ring of the newest `capacity` ids, its set, and a floor."""

    __slots__ = ("_next", "_ring", "_seen", "floor")

    def __init__(self, capacity: int = TRADE_WINDOW) -> None:
        self._seen: set[int | str] = set()
        self._ring: list[int | str | None] = [None] * capacity
        self._next = 0
        #: Every integer id at or below this is treated as already seen.
        self.floor = -1

    def add(self, trade_id: str) -> bool:
        """Remember a live trade's id; False when it is a duplicate."""
        # trade_key and _remember, inlined: this runs for every live trade.
        key: int | str = trade_id
        if len(trade_id) == _EVENT_ID_LENGTH:
            try:
                key = int(trade_id, 16)
            except ValueError:
                key = trade_id
        seen = self._seen
        if key in seen:
            return False
        floor = self.floor
        if key.__class__ is int and key <= floor:
            return False
        ring = self._ring
        slot = self._next
        evicted = ring[slot]
        if evicted is not None:
            seen.discard(evicted)
            if evicted.__class__ is int and evicted > floor:
                self.floor = evicted
        ring[slot] = key
        seen.add(key)
        slot += 1
        self._next = 0 if slot == len(ring) else slot
        return True

    def load_snapshot(self, trade_ids: Iterable[str]) -> None:
        """Remember a snapshot's ids (any order); its rows are never counted as trades."""
        numbered: list[int] = []
        for trade_id in trade_ids:
            key = trade_key(trade_id)
            if key.__class__ is int:
                numbered.append(key)
            elif key not in self._seen:
                self._remember(key)
        numbered.sort()
        capacity = len(self._ring)
        if len(numbered) > capacity:
            older = numbered[-capacity - 1]
            if older > self.floor:
                self.floor = older
            numbered = numbered[-capacity:]
        for key in numbered:
            if key > self.floor and key not in self._seen:
                self._remember(key)

    def _remember(self, key: int | str) -> None:
        ring = self._ring
        slot = self._next
        evicted = ring[slot]
        if evicted is not None:
            self._seen.discard(evicted)
            if evicted.__class__ is int and evicted > self.floor:
                self.floor = evicted
        ring[slot] = key
        self._seen.add(key)
        slot += 1
        self._next = 0 if slot == len(ring) else slot

    def __len__(self) -> int:
        return len(self._seen)


class RecentIds:
    """The newest `capacity` ids, for ids that carry no order (subaccount fills)."""

    __slots__ = ("_order", "_seen")

    def __init__(self, capacity: int = RECENT_IDS_PER_MARKET) -> None:
        self._seen: set[str] = set()
        self._order: deque[str] = deque(maxlen=capacity)

    def add(self, trade_id: str) -> bool:
        """Remember `trade_id`; False when it was already known (a duplicate)."""
        seen = self._seen
        if trade_id in seen:
            return False
        order = self._order
        if len(order) == order.maxlen:
            seen.discard(order[0])
        order.append(trade_id)
        seen.add(trade_id)
        return True

    def __len__(self) -> int:
        return len(self._seen)


class TradesHandler(ChannelHandler):
    def __init__(self, shared: Shared) -> None:
        super().__init__(shared)
        #: ticker → its trade ids and its metrics.
        self._tapes: dict[str, tuple[TradeIds, MarketMetrics]] = {}
        # Bound once: `update` runs for every trade frame.
        self._collector = shared.collector
        self._timestamp = shared.timestamp
        self._observe = shared.exchange.observe

    def snapshot(self, ctx: FrameContext, sub_id: str | None, contents: Any) -> None:
        if not valid_ticker(sub_id):
            ctx.invalid("wrong_type", sub_id)
            return
        assert sub_id is not None
        entry = self._tapes.get(sub_id)
        if entry is None:
            market = self.shared.collector.market(sub_id)
            market.has_trades = True
            entry = self._tapes[sub_id] = (TradeIds(), market)
        tape = entry[0]
        entry[1].trades_at = ctx.received_at
        rows = contents.get("trades") if contents.__class__ is dict else None
        if rows.__class__ is not list:
            ctx.invalid("wrong_type", contents)
            return
        snapshot_ids: list[str] = []
        for row in rows:
            trade_id = row.get("id") if row.__class__ is dict else None
            if trade_id.__class__ is str and len(trade_id) <= MAX_ID_LENGTH:
                snapshot_ids.append(trade_id)
            else:
                ctx.invalid("wrong_type", row)
        tape.load_snapshot(snapshot_ids)

    def update(self, ctx: FrameContext, sub_id: Any, contents: Any) -> None:
        entry = self._tapes.get(sub_id) if sub_id.__class__ is str else None
        if entry is None:
            ctx.invalid("unknown_market", sub_id)
            return
        rows = contents.get("trades") if contents.__class__ is dict else None
        if rows.__class__ is not list:
            ctx.invalid("missing_field" if contents.__class__ is dict else "wrong_type", contents)
            return
        tape, market = entry
        now = ctx.received_at
        market.trades_at = now
        collector = self._collector
        newest: object = None
        for row in rows:
            if row.__class__ is not dict:
                ctx.invalid("wrong_type", row)
                continue
            trade_id = row.get("id")
            side = row.get("side")
            index = SIDE_INDEX.get(side) if side.__class__ is str else None
            if trade_id.__class__ is not str or len(trade_id) > MAX_ID_LENGTH or index is None:
                ctx.invalid("wrong_type" if "id" in row and "side" in row else "missing_field", row)
                continue
            price = positive(row.get("price"))
            size = positive(row.get("size"))
            if price is None or size is None:
                ctx.invalid("bad_number", row)
                continue
            if not tape.add(trade_id):
                collector.trades_duplicate += 1
                continue
            market.trades[index] += 1
            market.volume[index] += size
            market.notional[index] += size * price
            market.last_trade_price = price
            newest = row.get("createdAt")
        if newest is not None:
            stamp = self._timestamp(newest)
            if stamp is None:
                ctx.invalid("bad_number", newest)
            else:
                self._observe(ctx.cm.latency, stamp, now)  # type: ignore[arg-type]

    def forget(self, ticker: str) -> None:
        self._tapes.pop(ticker, None)
