"""The frame processor: decode → dispatch → state → counters, for every frame the feed receives.

Implements FrameSink (exporter.feed.sink) and ReadinessSource. Data frames return None and allocate as
little as possible; control frames return the Control event the feed acts on. Bad input never raises out
of `handle`: it is counted in dydx_messages_invalid_total{channel,reason}, logged at most once per reason
every LOG_INTERVAL_S (with the number of frames suppressed since), and leaves state as it was.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from exporter.feed.sink import (
    Connected,
    Control,
    MarketsChanged,
    ServerError,
    Subscribed,
    Unsubscribed,
)
from exporter.logs import get_logger
from exporter.metrics.catalog import PROCESSING_BUCKETS
from exporter.metrics.collector import ChannelMetrics, Collector, Histogram, MarketMetrics, SubaccountMetrics
from exporter.protocol import channels as ch
from exporter.protocol.frames import (
    JSONDecodeError,
    TimestampParser,
    finite,
    integer,
    loads,
    non_negative,
    positive,
)
from exporter.protocol.typed import (
    Levels,
    OraclePriceRow,
    TypedDecodeError,
    envelope_decoder,
    levels_decoder,
    markets_decoder,
    to_builtins,
)
from exporter.state.book import Book
from exporter.state.markets import DirectoryChange, MarketDirectory, valid_ticker
from exporter.state.msgids import MessageIds
from exporter.state.subaccounts import Subaccount
from exporter.state.trades import TradeIds

# exporter.logs.get_logger passes logger= twice to structlog (TypeError at import); bind the name instead.
log = get_logger(__name__)
_CONTENTS_DECODE_ERRORS: Final = (*TypedDecodeError, JSONDecodeError)

#: Larger frames are refused unread. Real snapshots reach hundreds of KB (markets, 1000-row trades).
DEFAULT_MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
#: Longer than the indexer's 5 s snapshot fetch, after which a late `subscribed` frame cannot come.
DEFAULT_ID_GRACE_S: Final = 10.0
LOG_INTERVAL_S: Final = 10.0
#: Candles carry no event time: their latency uses the newest exchange time seen on any channel, but only
#: while that time itself was received this recently (otherwise the estimate would only measure silence).
CANDLE_REFERENCE_MAX_AGE_S: Final = 5.0
_SIDE_INDEX: Final = {"BUY": 0, "SELL": 1}
_INF: Final = math.inf
_T_DATA: Final = ch.T_CHANNEL_DATA
_T_BATCH: Final = ch.T_CHANNEL_BATCH_DATA
_NAN: Final = math.nan
_ORDERBOOK: Final = ch.ORDERBOOK
_MARKETS: Final = ch.MARKETS

DataHandler = Callable[[ChannelMetrics, Any, Any, int, float], None]
SnapshotHandler = Callable[[str, ChannelMetrics, Any, Any, int, float], None]
_Route = tuple[ChannelMetrics, DataHandler, bool]
#: Channels whose update handler takes a frame's contents as a list (a batch, or one wrapped in a tuple):
#: the per-frame lookups are then made once per batch.
_LIST_HANDLERS: Final = frozenset({ch.ORDERBOOK})
_PROCESSING_B0, _PROCESSING_B1, _PROCESSING_B2 = PROCESSING_BUCKETS[:3]


class _LinkState:
    __slots__ = ("books", "ids", "last_data")

    def __init__(self, grace: float) -> None:
        self.ids = MessageIds(grace)
        self.last_data: dict[str, float] = {}
        self.books: set[str] = set()


class _InvalidLog:
    """One log line per (channel, reason) per interval, carrying how many were suppressed meanwhile."""

    __slots__ = ("_interval", "_last", "_suppressed")

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def __call__(
        self, link: str, channel: str, reason: str, sample: object, error: BaseException | None
    ) -> None:
        key = (channel, reason)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        text = sample if isinstance(sample, str) else repr(sample)
        log.warning(
            "frame_invalid",
            link=link,
            channel=channel,
            reason=reason,
            suppressed=suppressed,
            sample=text[:200],
            exc_info=error,
        )


class Processor:
    def __init__(
        self,
        collector: Collector,
        *,
        clock: Callable[[], float] = time.time,
        stale_after: float = 30.0,
        id_grace: float = DEFAULT_ID_GRACE_S,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        wants_market: Callable[[str], bool] | None = None,
    ) -> None:
        """`wants_market` says which listed markets get per-market series (market info, oracle price): pass
        the --markets / --shard filter so shards do not all export every market. Default: all."""
        self._collector = collector
        self._wants_market = wants_market
        self._clock = clock
        self._stale_after = stale_after
        self._id_grace = id_grace
        self._max_frame_bytes = max_frame_bytes
        self._links: dict[str, _LinkState] = {}
        self._channels: dict[str, ChannelMetrics] = {}
        #: channel name → (its metrics, its update handler, whether the handler takes a list of contents),
        #: filled as channels are first seen.
        self._routes: dict[str, _Route] = {}
        #: The link of the frame being handled, for the invalid-frame log of the channel handlers.
        self._link = ""
        self._books: dict[str, Book] = {}
        self._market_metrics = collector.markets
        self._tapes: dict[str, tuple[TradeIds, MarketMetrics]] = {}
        #: candle subscription id ("BTC-USD/1MIN") → its market's metrics, for the freshness stamp.
        self._candle_markets: dict[str, MarketMetrics] = {}
        self._subaccounts: dict[str, tuple[Subaccount, SubaccountMetrics]] = {}
        #: (channel, id) → reason of the resubscribe the feed asked for; its snapshot counts as that resync.
        self._resync_reasons: dict[tuple[str, str], str] = {}
        self._directory = MarketDirectory()
        self._timestamp = TimestampParser()
        self._last_data_at = 0.0
        self._newest_exchange_time = 0.0
        self._newest_exchange_received = 0.0
        self._pending_change: DirectoryChange | None = None
        self._log_invalid = _InvalidLog(LOG_INTERVAL_S)
        self._decode_typed = envelope_decoder().decode
        self._decode_levels = levels_decoder().decode
        self._decode_markets = markets_decoder().decode
        self._updates: dict[str, DataHandler] = {
            ch.ORDERBOOK: self._orderbook_updates,  # takes the frame's list of contents (_LIST_HANDLERS)
            ch.TRADES: self._trades_update,
            ch.MARKETS: self._markets_update,
            ch.CANDLES: self._candles_update,
            ch.BLOCK_HEIGHT: self._block_height_update,
            ch.SUBACCOUNTS: self._subaccount_update,
            ch.PARENT_SUBACCOUNTS: self._ignored,
        }
        self._snapshots: dict[str, SnapshotHandler] = {
            ch.ORDERBOOK: self._orderbook_snapshot,
            ch.TRADES: self._trades_snapshot,
            ch.MARKETS: self._markets_snapshot,
            ch.CANDLES: self._candles_snapshot,
            ch.BLOCK_HEIGHT: self._block_height_snapshot,
            ch.SUBACCOUNTS: self._subaccount_snapshot,
            ch.PARENT_SUBACCOUNTS: self._ignored_snapshot,
        }
        collector.set_component_probe("processor", lambda now: not self.not_ready_reasons(now))

    # --- FrameSink --------------------------------------------------------------------------------------
    def link_opened(self, link: str) -> None:
        state = self._links.get(link)
        if state is None:
            self._links[link] = _LinkState(self._id_grace)
        else:
            state.ids.reset()

    def link_closed(self, link: str) -> None:
        state = self._links.get(link)
        if state is None:
            return
        state.ids.reset()
        now = self._clock()
        for ticker in state.books:
            book = self._books.get(ticker)
            if book is not None and book.link == link:
                book.invalidate(now)
            self._resync_reasons.pop((ch.ORDERBOOK, ticker), None)  # its next snapshot is a reconnect
        state.books.clear()

    def last_data_at(self, link: str, channel: str) -> float | None:
        state = self._links.get(link)
        return None if state is None else state.last_data.get(channel)

    def handle(self, link: str, raw: str | bytes, received_at: float) -> Control | None:
        # The hot path. A data frame in the protocol's exact shape is decoded typed (msgspec, its shape
        # checked in C) and, for a known channel with the next message id in order, runs straight through
        # here. Everything else (control frames, a wrong shape, an id out of order, a channel's first frame)
        # goes to _handle_dict before any state changes, so every check and count stays in one place.
        collector = self._collector
        self._link = link
        size = len(raw)
        collector.received_bytes += size
        if size > self._max_frame_bytes:
            self._invalid(link, collector.unknown_channel, "oversized", raw[:200])
            return None
        try:
            frame = self._decode_typed(raw)
        except TypedDecodeError:
            return self._handle_dict(link, raw, received_at)
        try:
            route = self._routes.get(frame.channel)
            state = self._links.get(link)
            message_id = frame.message_id
            if route is None or state is None or message_id != state.ids.fast_next:
                return self._handle_dict(link, raw, received_at)
            cm, handler, _ = route
            # Compared by equality, never identity: the name comes from the frame or from parsing
            # --channels at run time, and is not the constant object (an `is` here once sent every
            # one-level book update down the general path, which rejected it).
            channel = cm.name
            contents: Any
            try:
                if channel == _ORDERBOOK:
                    contents = self._decode_levels(frame.contents)
                elif channel == _MARKETS:
                    contents = self._decode_markets(frame.contents)
                    for item in contents if contents.__class__ is list else (contents,):
                        if item.oraclePrices is None or item.trading is not None:
                            return self._handle_dict(link, raw, received_at)
                else:
                    contents = loads(memoryview(frame.contents))
            except _CONTENTS_DECODE_ERRORS:
                return self._handle_dict(link, raw, received_at)
            frame_type = frame.type
            if frame_type == _T_DATA:
                frame_type = _T_DATA  # the constant: its hash is cached for the counter below
                batched = False
            else:
                frame_type = _T_BATCH
                batched = True
            if (contents.__class__ is list) is not batched:
                return self._handle_dict(link, raw, received_at)
            cm.messages[frame_type] += 1
            state.ids.fast_next = message_id + 1
            state.last_data[cm.name] = received_at
            cm.last_message_at = received_at
            self._last_data_at = received_at
            if channel == _ORDERBOOK:
                if batched:
                    cm.updates += len(contents)
                    self._typed_orderbook(cm, frame.id, contents, message_id, received_at)
                else:
                    # Four in five frames of the feed: one level on one side of a book that has its
                    # snapshot. Applied inline; anything else takes _typed_orderbook's checks.
                    cm.updates += 1
                    sub_id = frame.id
                    book = self._books.get(sub_id)  # type: ignore[arg-type]
                    bids = contents.bids
                    asks = contents.asks
                    level = bids if asks is None else asks if bids is None else None
                    if level is not None and book is not None and book.has_snapshot:
                        price, amount = level[0]
                        book.updated_at = received_at
                        if price < _INF and amount < _INF:
                            # Book.update_bid/ask's commonest case inline: a new size for a level it
                            # holds (no price moves, so the crossing cannot change).
                            side = book.bids if asks is None else book.asks
                            sizes = side.sizes
                            if amount != 0.0 and price in sizes:
                                sizes[price] = amount
                                side.ids[price] = message_id
                            elif asks is None:
                                book.update_bid(price, amount, message_id, received_at)
                            else:
                                book.update_ask(price, amount, message_id, received_at)
                        else:
                            self._invalid("", cm, "bad_number", list(level[0]))
                    else:
                        self._typed_orderbook(cm, sub_id, (contents,), message_id, received_at)
            elif channel == _MARKETS:
                if batched:
                    cm.updates += len(contents)
                    for item in contents:
                        self._oracle_prices_typed(cm, item.oraclePrices, received_at)
                else:
                    cm.updates += 1
                    self._oracle_prices_typed(cm, contents.oraclePrices, received_at)
            elif not batched:
                cm.updates += 1
                handler(cm, frame.id, contents, message_id, received_at)
            else:
                cm.updates += len(contents)
                sub_id = frame.id
                for item in contents:
                    handler(cm, sub_id, item, message_id, received_at)
            return self._data_done(cm, received_at)
        except Exception as error:  # a bug here must not take the feed loop down with it
            self._invalid(link, collector.unknown_channel, "processing_error", raw[:200], error)
            return None

    def _data_done(self, cm: ChannelMetrics, received_at: float) -> Control | None:
        """The end of every data frame, on either decode path: observe dydx_processing_seconds (the common
        buckets tested inline, no bisect call) and hand over a market change the frame revealed."""
        processing = self._clock() - received_at
        histogram: Histogram = cm.processing  # type: ignore[assignment]
        if processing <= _PROCESSING_B0:
            histogram.counts[0] += 1
            if processing > 0.0:
                histogram.sum += processing
        else:
            if processing <= _PROCESSING_B1:
                histogram.counts[1] += 1
            elif processing <= _PROCESSING_B2:
                histogram.counts[2] += 1
            else:
                histogram.counts[bisect_left(histogram.bounds, processing)] += 1
            histogram.sum += processing
        if self._pending_change is not None:
            change, self._pending_change = self._pending_change, None
            return self._markets_changed(change)
        return None

    def _handle_dict(self, link: str, raw: str | bytes, received_at: float) -> Control | None:
        """Every frame the typed decoder refuses: control frames and anything off the protocol's shape."""
        collector = self._collector
        try:
            frame = loads(raw)
        except JSONDecodeError:
            self._invalid(link, collector.unknown_channel, "not_json", raw[:200])
            return None
        if frame.__class__ is not dict:
            self._invalid(link, collector.unknown_channel, "not_object", raw[:200])
            return None
        try:
            frame_type = frame.get("type")
            if frame_type == _T_DATA:
                frame_type = _T_DATA  # the constant: its hash is cached for the counter below
                batched = False
            elif frame_type == _T_BATCH:
                frame_type = _T_BATCH
                batched = True
            else:
                return self._control(link, frame, frame_type, received_at)
            try:  # subscripts are cheaper than .get(); a frame missing any of these takes the .get() path
                name = frame["channel"]
                message_id = frame["message_id"]
                contents = frame["contents"]
            except KeyError:
                name = frame.get("channel")
                message_id = frame.get("message_id")
                contents = frame.get("contents")
            route = self._routes.get(name) if name.__class__ is str else None
            if route is None:
                route = self._route(link, frame)
                if route is None:
                    return None
            cm, handler, takes_list = route
            cm.messages[frame_type] += 1
            state = self._links.get(link)
            if state is None or message_id.__class__ is not int:
                message_id = self._message_id(link, frame, cm, received_at)
                if message_id is None:
                    return None
                state = self._links[link]
            else:
                ids = state.ids
                if message_id == ids.fast_next:
                    ids.fast_next = message_id + 1
                elif not self._see(link, frame, cm, ids, message_id, received_at):
                    return None
            state.last_data[cm.name] = received_at
            cm.last_message_at = received_at
            self._last_data_at = received_at
            if not batched:
                cm.updates += 1
                handler(cm, frame.get("id"), (contents,) if takes_list else contents, message_id, received_at)
            elif contents.__class__ is list:
                cm.updates += len(contents)
                if takes_list:
                    handler(cm, frame.get("id"), contents, message_id, received_at)
                else:
                    sub_id = frame.get("id")
                    for item in contents:
                        handler(cm, sub_id, item, message_id, received_at)
            else:
                self._invalid(link, cm, "wrong_type", frame)
            return self._data_done(cm, received_at)
        except Exception as error:  # a bug here must not take the feed loop down with it
            self._invalid(link, collector.unknown_channel, "processing_error", raw[:200], error)
            return None

    def load_markets(self, perpetual_markets: Mapping[str, Mapping[str, object]]) -> MarketsChanged | None:
        change = self._directory.load(perpetual_markets)
        self._apply_prices(perpetual_markets)
        self._apply_directory(change)
        if not change:
            return None
        self._pending_change = None  # this answer supersedes what a channel snapshot found
        return self._markets_changed(change)

    def forget_market(self, ticker: str) -> None:
        self._books.pop(ticker, None)
        self._tapes.pop(ticker, None)
        for resolution in ch.CANDLE_RESOLUTIONS:
            self._candle_markets.pop(ch.candle_id(ticker, resolution), None)
        self._resync_reasons.pop((ch.ORDERBOOK, ticker), None)
        self._collector.forget_market(ticker)

    def crossed_books(self) -> Mapping[str, float]:
        return {ticker: book.crossed_since for ticker, book in self._books.items() if book.crossed}

    def expect_resync(self, channel: str, sub_id: str, reason: str) -> None:
        self._resync_reasons[(channel, sub_id)] = reason

    # --- ReadinessSource --------------------------------------------------------------------------------
    def not_ready_reasons(self, now: float) -> list[str]:
        if self._last_data_at == 0.0:
            return ["processor: no data frame received yet"]
        age = now - self._last_data_at
        if age > self._stale_after:
            return [f"processor: no data frame for {age:.1f}s (stale after {self._stale_after:g}s)"]
        return []

    # --- dispatch ---------------------------------------------------------------------------------------
    def _channel_of(self, link: str, frame: dict[str, Any]) -> ChannelMetrics | None:
        name = frame.get("channel")
        metrics = self._channels.get(name) if name.__class__ is str else None
        if metrics is None:
            if name in self._updates:
                metrics = self._channels[name] = self._collector.channel(name)
            else:
                reason = "missing_field" if name is None else "unknown_channel"
                self._invalid(link, self._collector.unknown_channel, reason, frame)
        return metrics

    def _message_id(self, link: str, frame: dict[str, Any], cm: ChannelMetrics, now: float) -> int | None:
        message_id = frame.get("message_id")
        if message_id.__class__ is not int or message_id < 0:
            self._invalid(link, cm, "bad_message_id", frame)
            return None
        state = self._links.get(link)
        if state is None:
            state = self._links[link] = _LinkState(self._id_grace)
        ids = state.ids
        if not ids.see(message_id, now):
            self._invalid(link, cm, "bad_message_id", frame)
            return None
        if ids.lost:
            self._collector.message_id_gaps += ids.lost
            ids.lost = 0
        return message_id

    def _route(self, link: str, frame: dict[str, Any]) -> _Route | None:
        cm = self._channel_of(link, frame)
        if cm is None:
            return None
        name = cm.name
        route = self._routes[name] = (cm, self._updates[name], name in _LIST_HANDLERS)
        return route

    def _see(
        self,
        link: str,
        frame: dict[str, Any],
        cm: ChannelMetrics,
        ids: MessageIds,
        message_id: int,
        now: float,
    ) -> bool:
        """The message-id check off the in-order path (holes, late frames, a fresh connection)."""
        if message_id < 0 or not ids.see(message_id, now):
            self._invalid(link, cm, "bad_message_id", frame)
            return False
        if ids.lost:
            self._collector.message_id_gaps += ids.lost
            ids.lost = 0
        return True

    def _control(self, link: str, frame: dict[str, Any], frame_type: object, now: float) -> Control | None:
        collector = self._collector
        if frame_type == ch.T_SUBSCRIBED:
            cm = self._channel_of(link, frame)
            if cm is None:
                return None
            cm.messages[ch.T_SUBSCRIBED] += 1
            message_id = self._message_id(link, frame, cm, now)
            if message_id is None:
                return None
            sub_id = frame.get("id")
            if cm.name not in ch.CHANNELS_WITHOUT_ID and (sub_id.__class__ is not str or len(sub_id) > 128):
                self._invalid(link, cm, "missing_field" if sub_id is None else "wrong_type", frame)
                return None
            self._links[link].last_data[cm.name] = now
            cm.last_message_at = now
            self._snapshots[cm.name](link, cm, sub_id, frame.get("contents"), message_id, now)
            processing = self._clock() - now
            cm.processing.observe(processing if processing > 0.0 else 0.0)  # type: ignore[union-attr]
            return Subscribed(link, cm.name, sub_id if sub_id.__class__ is str else None, message_id)
        if frame_type == ch.T_CONNECTED:
            connection_id = frame.get("connection_id")
            if connection_id.__class__ is not str:
                self._invalid(link, collector.unknown_channel, "missing_field", frame)
                return None
            collector.no_channel.messages[ch.T_CONNECTED] += 1
            self.link_opened(link)
            self._message_id(link, frame, collector.unknown_channel, now)
            return Connected(link, connection_id)
        if frame_type == ch.T_UNSUBSCRIBED:
            cm = self._channel_of(link, frame)
            if cm is None:
                return None
            cm.messages[ch.T_UNSUBSCRIBED] += 1
            self._message_id(link, frame, cm, now)
            sub_id = frame.get("id")
            sub_id = sub_id if sub_id.__class__ is str else None
            # A refresh the feed asked for keeps the book readable until its new snapshot replaces it.
            if (
                cm.name == ch.ORDERBOOK
                and sub_id is not None
                and (cm.name, sub_id) not in self._resync_reasons
            ):
                book = self._books.get(sub_id)
                if book is not None and book.link == link:
                    book.invalidate(now)
            return Unsubscribed(link, cm.name, sub_id)
        if frame_type == ch.T_ERROR:
            message = frame.get("message")
            if message.__class__ is not str:
                self._invalid(link, collector.unknown_channel, "missing_field", frame)
                return None
            channel = frame.get("channel")
            sub_id = frame.get("id")
            known = channel.__class__ is str and channel in self._updates
            target = collector.channel(channel) if known else collector.no_channel  # type: ignore[arg-type]
            target.messages[ch.T_ERROR] += 1
            self._message_id(link, frame, target if known else collector.unknown_channel, now)
            reason = ch.classify_error(message)
            collector.server_error(reason)
            return ServerError(
                link,
                message,
                reason,
                channel if known else None,
                sub_id if sub_id.__class__ is str else None,
            )
        reason = "missing_field" if frame_type is None else "unknown_type"
        self._invalid(link, collector.unknown_channel, reason, frame)
        return None

    # --- order book -------------------------------------------------------------------------------------
    def _orderbook_snapshot(
        self, link: str, cm: ChannelMetrics, sub_id: Any, contents: Any, message_id: int, now: float
    ) -> None:
        if not valid_ticker(sub_id):
            self._invalid(link, cm, "wrong_type", sub_id)
            return
        if contents.__class__ is not dict:
            self._invalid(link, cm, "wrong_type", contents)
            return
        bids = self._snapshot_levels(link, cm, contents.get("bids"))
        asks = self._snapshot_levels(link, cm, contents.get("asks"))
        book = self._books.get(sub_id)
        if book is None:
            book = self._books[sub_id] = Book()
            self._collector.market(sub_id).book = book
        reason = self._resync_reasons.pop((ch.ORDERBOOK, sub_id), None)
        if reason is None:
            reason = "resubscribe" if book.has_snapshot else "reconnect" if book.needs_resync else None
        if reason is not None:
            self._collector.market(sub_id).resyncs[reason] += 1
            log.info("orderbook_resync", market=sub_id, reason=reason, link=link)
        book.load_snapshot(link, bids, asks, message_id, now)
        book.updated_at = now
        self._links[link].books.add(sub_id)

    def _snapshot_levels(self, link: str, cm: ChannelMetrics, levels: Any) -> list[tuple[float, float]]:
        if levels is None:
            return []
        if levels.__class__ is not list:
            self._invalid(link, cm, "wrong_type", levels)
            return []
        parsed = []
        for level in levels:
            if level.__class__ is not dict:
                self._invalid(link, cm, "wrong_type", level)
                continue
            price = positive(level.get("price"))
            size = non_negative(level.get("size"))
            if price is None or size is None:
                self._invalid(link, cm, "bad_number", level)
                continue
            parsed.append((price, size))
        return parsed

    def _orderbook_updates(
        self, cm: ChannelMetrics, sub_id: Any, items: Any, message_id: int, now: float
    ) -> None:
        """The order book updates of one frame (one for channel_data, the batch for channel_batch_data)."""
        book = self._books.get(sub_id) if sub_id.__class__ is str else None
        if book is None or not book.has_snapshot:
            reason = "unknown_market" if book is None else "no_snapshot"
            for _ in items:
                self._invalid("", cm, reason, sub_id)
            return
        for contents in items:
            if contents.__class__ is not dict:
                self._invalid("", cm, "wrong_type", contents)
                continue
            # The protocol sends exactly one [price, size] string pair on one side per update: that case is
            # taken without detours; anything else goes through _update_levels' checks.
            levels = contents.get("bids")
            if levels is not None:
                is_bid = True
                if len(contents) > 1 and contents.get("asks") is not None:
                    levels = None  # both sides in one update: not the protocol's shape, but still valid
            else:
                levels = contents.get("asks")
                if levels is None:
                    self._invalid("", cm, "missing_field", contents)
                    continue
                is_bid = False
            book.updated_at = now
            if levels.__class__ is list and len(levels) == 1:
                level = levels[0]
                if level.__class__ is list and len(level) == 2:
                    price_text, size_text = level
                    if price_text.__class__ is str and size_text.__class__ is str:
                        try:
                            price = float(price_text)
                            size = float(size_text)
                        except ValueError:
                            pass
                        else:
                            if 0.0 < price < _INF and 0.0 <= size < _INF:
                                if is_bid:
                                    book.update_bid(price, size, message_id, now)
                                else:
                                    book.update_ask(price, size, message_id, now)
                                continue
            bids = contents.get("bids")
            asks = contents.get("asks")
            if bids is not None:
                self._update_levels(cm, book.update_bid, bids, message_id, now)
            if asks is not None:
                self._update_levels(cm, book.update_ask, asks, message_id, now)

    def _typed_orderbook(
        self, cm: ChannelMetrics, sub_id: str | None, items: Sequence[Levels], message_id: int, now: float
    ) -> None:
        """_orderbook_updates for typed updates: each holds one [price, size] pair of strings on a side."""
        book = self._books.get(sub_id) if sub_id is not None else None
        if book is None or not book.has_snapshot:
            reason = "unknown_market" if book is None else "no_snapshot"
            for _ in items:
                self._invalid("", cm, reason, sub_id)
            return
        for contents in items:
            bids = contents.bids
            asks = contents.asks
            if bids is None and asks is None:
                self._invalid("", cm, "missing_field", to_builtins(contents))
                continue
            book.updated_at = now
            # Decoded prices and sizes are > 0 and >= 0; only infinity is left to refuse.
            if bids is not None:
                price, amount = bids[0]
                if price < _INF and amount < _INF:
                    book.update_bid(price, amount, message_id, now)
                else:
                    self._invalid("", cm, "bad_number", list(bids[0]))
            if asks is not None:
                price, amount = asks[0]
                if price < _INF and amount < _INF:
                    book.update_ask(price, amount, message_id, now)
                else:
                    self._invalid("", cm, "bad_number", list(asks[0]))

    def _oracle_prices_typed(self, cm: ChannelMetrics, oracle: dict[str, OraclePriceRow], now: float) -> None:
        """_oracle_prices for typed rows (each has a string oraclePrice and effectiveAt)."""
        markets = self._market_metrics
        histogram: Histogram = cm.latency  # type: ignore[assignment]
        for ticker, row in oracle.items():
            try:
                price = float(row.oraclePrice)
            except ValueError:
                price = _NAN
            if not 0.0 < price < _INF:
                self._invalid("", cm, "bad_number", to_builtins(row))
                continue
            market = markets.get(ticker)
            if market is None:
                if ticker not in self._directory.statuses:
                    self._invalid("", cm, "unknown_market", ticker)
                continue
            market.oracle_price = price
            market.oracle_at = now
            stamp = self._timestamp(row.effectiveAt)
            if stamp is None:
                self._invalid("", cm, "bad_number", row.effectiveAt)
                continue
            if stamp > self._newest_exchange_time:
                self._newest_exchange_time = stamp
            self._newest_exchange_received = now
            lag = now - stamp
            if lag > 0.0:
                histogram.counts[bisect_left(histogram.bounds, lag)] += 1
                histogram.sum += lag
            else:
                histogram.counts[0] += 1

    def _update_levels(
        self,
        cm: ChannelMetrics,
        apply: Callable[[float, float, int, float], None],
        levels: Any,
        mid: int,
        now: float,
    ) -> None:
        if levels.__class__ is not list:
            self._invalid("", cm, "wrong_type", levels)
            return
        for level in levels:
            if level.__class__ is not list or len(level) != 2:
                self._invalid("", cm, "wrong_type", level)
                continue
            price = positive(level[0])
            size = non_negative(level[1])
            if price is None or size is None:
                self._invalid("", cm, "bad_number", level)
                continue
            apply(price, size, mid, now)

    # --- trades -----------------------------------------------------------------------------------------
    def _trades_snapshot(
        self, link: str, cm: ChannelMetrics, sub_id: Any, contents: Any, message_id: int, now: float
    ) -> None:
        if not valid_ticker(sub_id):
            self._invalid(link, cm, "wrong_type", sub_id)
            return
        entry = self._tapes.get(sub_id)
        if entry is None:
            market = self._collector.market(sub_id)
            market.has_trades = True
            entry = self._tapes[sub_id] = (TradeIds(), market)
        tape = entry[0]
        entry[1].trades_at = now
        rows = contents.get("trades") if contents.__class__ is dict else None
        if rows.__class__ is not list:
            self._invalid(link, cm, "wrong_type", contents)
            return
        snapshot_ids: list[str] = []
        for row in rows:
            trade_id = row.get("id") if row.__class__ is dict else None
            if trade_id.__class__ is str and len(trade_id) <= 64:
                snapshot_ids.append(trade_id)
            else:
                self._invalid(link, cm, "wrong_type", row)
        tape.load_snapshot(snapshot_ids)

    def _trades_update(
        self, cm: ChannelMetrics, sub_id: Any, contents: Any, message_id: int, now: float
    ) -> None:
        entry = self._tapes.get(sub_id) if sub_id.__class__ is str else None
        if entry is None:
            self._invalid("", cm, "unknown_market", sub_id)
            return
        rows = contents.get("trades") if contents.__class__ is dict else None
        if rows.__class__ is not list:
            self._invalid("", cm, "missing_field" if contents.__class__ is dict else "wrong_type", contents)
            return
        tape, market = entry
        market.trades_at = now
        newest: object = None
        for row in rows:
            if row.__class__ is not dict:
                self._invalid("", cm, "wrong_type", row)
                continue
            trade_id = row.get("id")
            side = row.get("side")
            index = _SIDE_INDEX.get(side) if side.__class__ is str else None
            if trade_id.__class__ is not str or len(trade_id) > 64 or index is None:
                self._invalid("", cm, "wrong_type" if "id" in row and "side" in row else "missing_field", row)
                continue
            price = positive(row.get("price"))
            size = positive(row.get("size"))
            if price is None or size is None:
                self._invalid("", cm, "bad_number", row)
                continue
            if not tape.add(trade_id):
                self._collector.trades_duplicate += 1
                continue
            market.trades[index] += 1
            market.volume[index] += size
            market.notional[index] += size * price
            market.last_trade_price = price
            newest = row.get("createdAt")
        if newest is not None:
            stamp = self._timestamp(newest)
            if stamp is None:
                self._invalid("", cm, "bad_number", newest)
                return
            if stamp > self._newest_exchange_time:
                self._newest_exchange_time = stamp
            self._newest_exchange_received = now
            lag = now - stamp
            histogram: Histogram = cm.latency  # type: ignore[assignment]
            if lag > 0.0:
                histogram.counts[bisect_left(histogram.bounds, lag)] += 1
                histogram.sum += lag
            else:
                histogram.counts[0] += 1

    # --- markets ----------------------------------------------------------------------------------------
    def _markets_snapshot(
        self, link: str, cm: ChannelMetrics, sub_id: Any, contents: Any, message_id: int, now: float
    ) -> None:
        markets = contents.get("markets") if contents.__class__ is dict else None
        if markets.__class__ is not dict:
            self._invalid(link, cm, "wrong_type", contents)
            return
        change = self._directory.load(markets)
        self._apply_prices(markets, now)
        self._apply_directory(change)
        if change:
            self._remember_change(change)

    def _markets_update(
        self, cm: ChannelMetrics, sub_id: Any, contents: Any, message_id: int, now: float
    ) -> None:
        if contents.__class__ is not dict:
            self._invalid("", cm, "wrong_type", contents)
            return
        oracle = contents.get("oraclePrices")
        trading = contents.get("trading")
        if oracle is None and trading is None:
            self._invalid("", cm, "missing_field", contents)
            return
        if oracle is not None:
            if oracle.__class__ is not dict:
                self._invalid("", cm, "wrong_type", oracle)
            else:
                self._oracle_prices(cm, oracle, now)
        if trading is not None:
            if trading.__class__ is not dict:
                self._invalid("", cm, "wrong_type", trading)
            else:
                change = self._directory.apply_trading(trading)
                if change:
                    self._apply_directory(change)
                    self._remember_change(change)

    def _oracle_prices(self, cm: ChannelMetrics, oracle: dict[str, Any], now: float) -> None:
        # Tens to hundreds per second on the real feed: the price parse and the latency observation are
        # inlined (see positive() and _observe_latency for the same checks spelled once).
        markets = self._market_metrics
        histogram: Histogram = cm.latency  # type: ignore[assignment]
        for ticker, row in oracle.items():
            price_text = row.get("oraclePrice") if row.__class__ is dict else None
            try:
                price = float(price_text) if price_text.__class__ is str else _NAN
            except ValueError:
                price = _NAN
            if not 0.0 < price < _INF:
                checked = positive(price_text)  # a JSON number; None for anything invalid
                if checked is None:
                    self._invalid("", cm, "bad_number" if row.__class__ is dict else "wrong_type", row)
                    continue
                price = checked
            market = markets.get(ticker)
            if market is None:
                # Markets outside --markets are listed but not tracked; only a ticker nobody listed is odd.
                if ticker not in self._directory.statuses:
                    self._invalid("", cm, "unknown_market", ticker)
                continue
            market.oracle_price = price
            market.oracle_at = now
            stamp = self._timestamp(row.get("effectiveAt"))
            if stamp is None:
                self._invalid("", cm, "bad_number", row.get("effectiveAt"))
                continue
            if stamp > self._newest_exchange_time:
                self._newest_exchange_time = stamp
            self._newest_exchange_received = now
            lag = now - stamp
            if lag > 0.0:
                histogram.counts[bisect_left(histogram.bounds, lag)] += 1
                histogram.sum += lag
            else:
                histogram.counts[0] += 1

    def _apply_prices(self, markets: Mapping[str, object], received_at: float | None = None) -> None:
        """Oracle prices of a full market list; `received_at` stamps freshness (a v4_markets snapshot, not
        the REST list, which is not a frame of the feed)."""
        collector = self._collector
        for ticker, market in markets.items():
            if isinstance(market, Mapping):
                price = positive(market.get("oraclePrice"))
                tracked = collector.existing_market(ticker)
                if price is not None and tracked is not None:
                    tracked.oracle_price = price
                    if received_at is not None:
                        tracked.oracle_at = received_at

    def _apply_directory(self, change: DirectoryChange) -> None:
        collector = self._collector
        statuses = self._directory.statuses
        wants = self._wants_market
        for ticker in (*change.listed, *change.status_changed):
            if wants is None or wants(ticker):
                market = collector.market(ticker)
                market.listed = True
                market.status = statuses[ticker]
        for ticker in change.delisted:
            self.forget_market(ticker)
        if change.listed or change.delisted:
            log.info("markets_changed", listed=change.listed[:20], delisted=change.delisted[:20],
                     listed_count=len(change.listed), delisted_count=len(change.delisted))  # fmt: skip

    def _remember_change(self, change: DirectoryChange) -> None:
        if self._pending_change is None:
            self._pending_change = change
        else:
            self._pending_change.merge(change)

    def _markets_changed(self, change: DirectoryChange) -> MarketsChanged:
        return MarketsChanged(
            markets=dict(self._directory.statuses),
            listed=tuple(change.listed),
            delisted=tuple(change.delisted),
        )

    def take_markets_change(self) -> MarketsChanged | None:
        """A change found in a v4_markets snapshot (whose frame returned Subscribed); also returned with
        the next v4_markets data frame."""
        if self._pending_change is None:
            return None
        change, self._pending_change = self._pending_change, None
        return self._markets_changed(change)

    # --- candles, block height, subaccounts -------------------------------------------------------------
    def _candles_snapshot(
        self, link: str, cm: ChannelMetrics, sub_id: Any, contents: Any, message_id: int, now: float
    ) -> None:
        candles = contents.get("candles") if contents.__class__ is dict else None
        if candles.__class__ is not list:
            self._invalid(link, cm, "wrong_type", contents)
            return
        ticker = sub_id.rpartition("/")[0] if sub_id.__class__ is str else None
        if valid_ticker(ticker):
            market = self._candle_markets[sub_id] = self._collector.market(ticker)  # type: ignore[arg-type]
            market.candles_at = now

    def _candles_update(
        self, cm: ChannelMetrics, sub_id: Any, contents: Any, message_id: int, now: float
    ) -> None:
        if contents.__class__ is not dict:
            self._invalid("", cm, "wrong_type", contents)
            return
        if positive(contents.get("close")) is None or contents.get("startedAt").__class__ is not str:
            self._invalid("", cm, "bad_number" if "close" in contents else "missing_field", contents)
            return
        market = self._candle_markets.get(sub_id) if sub_id.__class__ is str else None
        if market is not None:
            market.candles_at = now
        reference = self._newest_exchange_time
        if reference and now - self._newest_exchange_received <= CANDLE_REFERENCE_MAX_AGE_S:
            lag = now - reference
            cm.latency.observe(lag if lag > 0.0 else 0.0)  # type: ignore[union-attr]

    def _block_height_snapshot(
        self, link: str, cm: ChannelMetrics, sub_id: Any, contents: Any, message_id: int, now: float
    ) -> None:
        height = integer(contents.get("height")) if contents.__class__ is dict else None
        stamp = self._timestamp(contents.get("time")) if contents.__class__ is dict else None
        if height is None or stamp is None:
            self._invalid(link, cm, "bad_number" if contents.__class__ is dict else "wrong_type", contents)
            return
        self._collector.block_height = height
        self._collector.block_timestamp = stamp

    def _block_height_update(
        self, cm: ChannelMetrics, sub_id: Any, contents: Any, message_id: int, now: float
    ) -> None:
        if contents.__class__ is not dict:
            self._invalid("", cm, "wrong_type", contents)
            return
        height = integer(contents.get("blockHeight"))
        stamp = self._timestamp(contents.get("time"))
        if height is None or stamp is None:
            self._invalid("", cm, "bad_number" if "blockHeight" in contents else "missing_field", contents)
            return
        self._collector.block_height = height
        self._collector.block_timestamp = stamp
        self._observe_latency(cm, stamp, now)

    # --- subaccounts ----------------------------------------------------------------------------------
    def _subaccount(
        self, cm: ChannelMetrics, sub_id: Any, link: str
    ) -> tuple[Subaccount, SubaccountMetrics] | None:
        entry = self._subaccounts.get(sub_id) if sub_id.__class__ is str else None
        if entry is None:
            metrics = self._collector.subaccount(sub_id) if sub_id.__class__ is str else None
            if metrics is None:  # only the configured subaccounts are tracked (bounded label)
                self._invalid(link, cm, "unknown_subaccount", sub_id)
                return None
            entry = self._subaccounts[sub_id] = (Subaccount(), metrics)
        return entry

    def _subaccount_snapshot(
        self, link: str, cm: ChannelMetrics, sub_id: Any, contents: Any, message_id: int, now: float
    ) -> None:
        entry = self._subaccount(cm, sub_id, link)
        if entry is None:
            return
        if contents.__class__ is not dict:
            self._invalid(link, cm, "wrong_type", contents)
            return
        state, metrics = entry
        account = contents.get("subaccount")
        if account is None:  # `{}`: the indexer does not know this subaccount
            state.forget()
            metrics.equity = metrics.free_collateral = None
            metrics.open_positions = metrics.open_orders = 0
            return
        if account.__class__ is not dict:
            self._invalid(link, cm, "wrong_type", account)
            return
        equity = finite(account.get("equity"))
        free_collateral = finite(account.get("freeCollateral"))
        if equity is None or free_collateral is None:
            self._invalid(link, cm, "bad_number", account)
        metrics.equity = equity
        metrics.free_collateral = free_collateral
        positions: dict[str, str] = {}
        open_positions = account.get("openPerpetualPositions")
        if open_positions.__class__ is dict:
            for market, position in open_positions.items():
                status = position.get("status", "OPEN") if position.__class__ is dict else None
                if status.__class__ is str:
                    positions[market] = status
                else:
                    self._invalid(link, cm, "wrong_type", position)
        elif open_positions is not None:
            self._invalid(link, cm, "wrong_type", open_positions)
        orders: dict[str, str] = {}
        rows = contents.get("orders")
        for row in rows if rows.__class__ is list else ():
            order_id = row.get("id") if row.__class__ is dict else None
            status = row.get("status") if row.__class__ is dict else None
            if order_id.__class__ is str and status.__class__ is str:
                orders[order_id] = status
            else:
                self._invalid(link, cm, "wrong_type", row)
        state.load_snapshot(positions, orders)
        metrics.open_positions = len(state.positions)
        metrics.open_orders = len(state.orders)

    def _subaccount_update(
        self, cm: ChannelMetrics, sub_id: Any, contents: Any, message_id: int, now: float
    ) -> None:
        entry = self._subaccount(cm, sub_id, "")
        if entry is None:
            return
        if contents.__class__ is not dict:
            self._invalid("", cm, "wrong_type", contents)
            return
        state, metrics = entry
        positions = contents.get("perpetualPositions")
        if positions is not None:
            for row in positions if positions.__class__ is list else (positions,):
                market = row.get("market") if row.__class__ is dict else None
                status = row.get("status") if row.__class__ is dict else None
                if market.__class__ is str and status.__class__ is str:
                    state.apply_position(market, status, finite(row.get("size")))
                else:
                    self._invalid("", cm, "wrong_type", row)
            metrics.open_positions = len(state.positions)
        orders = contents.get("orders")
        if orders is not None:
            for row in orders if orders.__class__ is list else (orders,):
                order_id = row.get("id") if row.__class__ is dict else None
                status = row.get("status") if row.__class__ is dict else None
                if order_id.__class__ is str and status.__class__ is str:
                    state.apply_order(order_id, status)
                else:
                    self._invalid("", cm, "wrong_type", row)
            metrics.open_orders = len(state.orders)
        fills = contents.get("fills")
        if fills is not None:
            for row in fills if fills.__class__ is list else (fills,):
                fill_id = row.get("id") if row.__class__ is dict else None
                side = row.get("side") if row.__class__ is dict else None
                index = _SIDE_INDEX.get(side) if side.__class__ is str else None
                if fill_id.__class__ is not str or len(fill_id) > 64 or index is None:
                    self._invalid("", cm, "wrong_type", row)
                elif state.fills.add(fill_id):
                    metrics.fills[index] += 1

    def _ignored(self, cm: ChannelMetrics, sub_id: Any, contents: Any, message_id: int, now: float) -> None:
        """Parent subaccounts are counted (messages, updates, processing) but carry no exporter state."""

    def _ignored_snapshot(
        self, link: str, cm: ChannelMetrics, sub_id: Any, contents: Any, message_id: int, now: float
    ) -> None:
        """See _ignored."""

    # --- shared -----------------------------------------------------------------------------------------
    def _observe_latency(self, cm: ChannelMetrics, event_time: object, now: float) -> None:
        stamp = event_time if event_time.__class__ is float else self._timestamp(event_time)
        if stamp is None:
            self._invalid("", cm, "bad_number", event_time)
            return
        if stamp > self._newest_exchange_time:
            self._newest_exchange_time = stamp
        self._newest_exchange_received = now
        lag = now - stamp
        # An exchange clock ahead of ours reads as zero lag rather than a negative observation.
        cm.latency.observe(lag if lag > 0.0 else 0.0)  # type: ignore[union-attr]

    def _invalid(
        self,
        link: str,
        cm: ChannelMetrics,
        reason: str,
        sample: object,
        error: BaseException | None = None,
    ) -> None:
        cm.invalid[reason] = cm.invalid.get(reason, 0) + 1
        self._log_invalid(link or self._link, cm.name, reason, sample, error)
