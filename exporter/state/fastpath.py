"""The typed decode path: data frames in the protocol's exact shape, decoded by msgspec in C.

The router decodes every frame's envelope with `TypedPath.envelope` first; a frame it refuses (control
frames, a wrong shape, invalid JSON) takes the router's dict (orjson) path. Contents are decoded by
channel with `TypedPath.contents[channel]`: an order book update or an oracle price update in the
protocol's exact shape becomes a Struct whose shape is already checked, applied by the adapters below
through the very same rules as the dict path (`Book.update_bid` / `update_ask`,
`MarketsHandler.oracle_price`). Contents a decoder refuses (a second level, a `trading` diff) and other
channels are decoded as plain JSON for the channel's own handler. Worth keeping only while it saves at
least 10 % CPU per update (BENCHMARKS.md; `Router(typed=False)` turns it off).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec

from exporter.protocol import channels as ch
from exporter.protocol.frames import JSONDecodeError
from exporter.protocol.typed import (
    Envelope,
    Levels,
    OraclePrices,
    TypedDecodeError,
    envelope_decoder,
    levels_decoder,
    oracle_decoder,
    to_builtins,
)
from exporter.state.book import Book
from exporter.state.context import ChannelHandler, FrameContext
from exporter.state.markets import MarketsHandler
from exporter.state.orderbook import OrderbookHandler

#: What decoding a frame's envelope or plain contents may raise: the frame then takes the dict path.
DECODE_ERRORS: Final = (*TypedDecodeError, JSONDecodeError)
#: What a contents decoder raises for contents off its shape: they are decoded as plain JSON instead.
CONTENTS_REFUSED: Final = msgspec.MsgspecError
_INF: Final = math.inf
#: The update rule of each side (exporter.state.book), called as plain functions: no bound method per update.
_UPDATE_BID: Final = Book.update_bid
_UPDATE_ASK: Final = Book.update_ask


class TypedLevels(ChannelHandler):
    """Order book updates decoded to `Levels`: one [price, size] pair of floats on a side, > 0 and >= 0
    (checked by the decoder, which does take "inf")."""

    def __init__(self, books: OrderbookHandler) -> None:
        super().__init__(books.shared)
        self._handler = books
        self._books = books.books

    def update(self, ctx: FrameContext, sub_id: Any, contents: Levels) -> None:
        # Four in five frames of the feed: one finite level on one side of a snapshotted book, applied
        # here without a detour; anything else takes `updates`, which checks and counts everything.
        book = self._books.get(sub_id)
        if book is not None and book.has_snapshot:
            bids = contents.bids
            asks = contents.asks
            if asks is None:
                if bids is not None:
                    price, size = bids[0]
                    if price < _INF and size < _INF:
                        _UPDATE_BID(book, price, size, ctx.message_id, ctx.received_at)
                        return
            elif bids is None:
                price, size = asks[0]
                if price < _INF and size < _INF:
                    _UPDATE_ASK(book, price, size, ctx.message_id, ctx.received_at)
                    return
        self.updates(ctx, sub_id, [contents])

    def updates(self, ctx: FrameContext, sub_id: Any, items: Sequence[Levels]) -> None:
        # The book is looked up once per batch and each update applied in the loop (a call per update
        # costs ≈ 10 % CPU per update on the batched feed).
        book = self._handler.live_book(ctx, sub_id, len(items))
        if book is None:
            return
        message_id = ctx.message_id
        now = ctx.received_at
        for contents in items:
            bids = contents.bids
            asks = contents.asks
            if asks is None:
                if bids is None:
                    ctx.invalid("missing_field", to_builtins(contents))
                    continue
                apply = _UPDATE_BID
                price, size = bids[0]
            elif bids is None:
                apply = _UPDATE_ASK
                price, size = asks[0]
            else:  # both sides in one update (valid, never seen on the feed): the bid, then the ask
                self.updates(ctx, sub_id, (Levels(bids=bids), Levels(asks=asks)))
                continue
            if price < _INF and size < _INF:
                apply(book, price, size, message_id, now)
            else:
                ctx.invalid("bad_number", [price, size])


class TypedOraclePrices(ChannelHandler):
    """v4_markets updates holding only oracle prices, each row a string price and effective time."""

    def __init__(self, markets: MarketsHandler) -> None:
        super().__init__(markets.shared)
        self._oracle_price = markets.oracle_price

    def update(self, ctx: FrameContext, sub_id: Any, contents: OraclePrices) -> None:
        oracle_price = self._oracle_price
        for ticker, row in contents.oraclePrices.items():
            try:
                price = float(row.oraclePrice)
            except ValueError:
                price = 0.0
            if 0.0 < price < _INF:
                oracle_price(ctx, ticker, price, row.effectiveAt)
            else:
                ctx.invalid("bad_number", to_builtins(row))


class TypedPath:
    """`enabled=False` refuses every frame (benchmarks, and the tests that prove both paths agree)."""

    def __init__(self, books: OrderbookHandler, markets: MarketsHandler, *, enabled: bool = True) -> None:
        self.envelope: Final = envelope_decoder().decode if enabled else _refuse
        self.levels: Final = levels_decoder().decode
        #: channel → (its contents decoder, the adapter that applies what it decodes).
        self.contents: Final[dict[str, tuple[Callable[[Any], Any], ChannelHandler]]] = {
            ch.ORDERBOOK: (self.levels, TypedLevels(books)),
            ch.MARKETS: (oracle_decoder().decode, TypedOraclePrices(markets)),
        }


def _refuse(raw: str | bytes) -> Envelope:
    raise msgspec.DecodeError("typed decoding is off")
