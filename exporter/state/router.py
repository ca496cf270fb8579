"""The frame router: every frame the feed receives → its channel's handler, with the envelope's bookkeeping.

Implements FrameSink (exporter.feed.sink). For each frame: the size check, the decode (typed first, see
exporter.state.fastpath, else orjson), the message id per connection, the routing to the handler named by
the channel's ChannelSpec row, and the counting (frames, updates, freshness, processing time). Control
frames are parsed by exporter.protocol.control.parse_control and returned as the event the feed acts on;
data frames return None. Bad input never raises out of `handle`: it is counted in
dydx_messages_invalid_total{channel,reason} through the frame's context and logged at most once per reason
every LOG_INTERVAL_S.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from exporter.metrics.channels import ChannelMetrics
from exporter.metrics.collector import Collector
from exporter.protocol import channels as ch
from exporter.protocol.control import (
    Connected,
    Control,
    Rejected,
    ServerError,
    Subscribed,
    Unsubscribed,
    parse_control,
)
from exporter.protocol.frames import JSONDecodeError, TimestampParser, loads
from exporter.state.block_height import BlockHeightHandler
from exporter.state.candles import CandlesHandler
from exporter.state.context import ChannelHandler, ExchangeClock, FrameContext, RejectLog, Shared, reject
from exporter.state.fastpath import CONTENTS_REFUSED, DECODE_ERRORS, TypedPath
from exporter.state.markets import MarketsHandler
from exporter.state.msgids import MessageIds
from exporter.state.orderbook import OrderbookHandler
from exporter.state.schema import SAMPLE_MASK, SchemaWatch
from exporter.state.subaccounts import SubaccountsHandler
from exporter.state.trades import TradesHandler
from exporter.state.universe import MarketsChanged, MarketUniverse

#: Each ChannelSpec's `handler`, by name. Parent subaccounts are counted but carry no exporter state.
HANDLERS: Final[dict[str, type[ChannelHandler]]] = {
    "orderbook": OrderbookHandler,
    "trades": TradesHandler,
    "markets": MarketsHandler,
    "candles": CandlesHandler,
    "block_height": BlockHeightHandler,
    "subaccounts": SubaccountsHandler,
    "ignored": ChannelHandler,
}


def check_handlers(handlers: Iterable[str] = HANDLERS) -> None:
    """Every channel of the table has a handler, and every handler a channel (checked at import)."""
    named = {spec.handler for spec in ch.CHANNELS.values()}
    if named != set(handlers):
        raise RuntimeError(
            f"channel handlers out of step with the ChannelSpec table: {named ^ set(handlers)}"
        )


check_handlers()

#: Larger frames are refused unread. Real snapshots reach hundreds of KB (markets, 1000-row trades).
DEFAULT_MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
#: Longer than the indexer's 5 s snapshot fetch, after which a late `subscribed` frame cannot come.
DEFAULT_ID_GRACE_S: Final = 10.0
_T_DATA: Final = ch.T_CHANNEL_DATA
_T_BATCH: Final = ch.T_CHANNEL_BATCH_DATA
_SAMPLE_MASK: Final = SAMPLE_MASK
#: A channel's metrics, its handler, and whether the link watchdog asks for its last data time (rated).
_Route = tuple[ChannelMetrics, ChannelHandler, bool]


class _Link:
    __slots__ = ("ctx", "ids", "last_data")

    def __init__(self, name: str, grace: float, cm: ChannelMetrics, rejects: RejectLog) -> None:
        self.ids = MessageIds(grace)
        self.last_data: dict[str, float] = {}
        self.ctx = FrameContext(name, cm, rejects)


class Router:
    def __init__(
        self,
        collector: Collector,
        universe: MarketUniverse | None = None,
        *,
        clock: Callable[[], float] = time.time,
        stale_after: float = 30.0,
        id_grace: float = DEFAULT_ID_GRACE_S,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        typed: bool = True,
    ) -> None:
        """`universe` is the market universe to feed and follow (a new one by default); `typed=False`
        decodes every frame with the dict path only."""
        self._collector = collector
        self.universe = universe if universe is not None else MarketUniverse()
        self._clock = clock
        self._stale_after = stale_after
        self._id_grace = id_grace
        self._max_frame_bytes = max_frame_bytes
        self._rejects = RejectLog()
        self._schema = SchemaWatch()
        self._links: dict[str, _Link] = {}
        shared = Shared(collector, self.universe, ExchangeClock(), TimestampParser())
        #: channel name → its handler (one per channel, all built up front; their metrics appear only
        #: when a channel's first frame arrives).
        self._handlers = {name: HANDLERS[spec.handler](shared) for name, spec in ch.CHANNELS.items()}
        #: channel name → (its metrics, its handler), filled as channels are first seen.
        self._routes: dict[str, _Route] = {}
        self.books: OrderbookHandler = self._handlers[ch.ORDERBOOK]  # type: ignore[assignment]
        markets: MarketsHandler = self._handlers[ch.MARKETS]  # type: ignore[assignment]
        self.typed = TypedPath(self.books, markets, enabled=typed)
        self._envelope = self.typed.envelope
        self._typed_contents = self.typed.contents
        self.universe.subscribe(self._follow)

    # --- FrameSink ------------------------------------------------------------------------------------
    def link_opened(self, link: str) -> None:
        state = self._links.get(link)
        if state is None:
            self._link(link)
        else:
            state.ids.reset()

    def link_closed(self, link: str) -> None:
        state = self._links.get(link)
        if state is None:
            return
        state.ids.reset()
        now = self._clock()
        for handler in self._handlers.values():
            handler.link_closed(link, now)

    def last_data_at(self, link: str, channel: str) -> float | None:
        """Kept for the rated channels only (the watchdog's): the others would cost a store per frame."""
        state = self._links.get(link)
        return None if state is None else state.last_data.get(channel)

    def forget_market(self, ticker: str) -> None:
        for handler in self._handlers.values():
            handler.forget(ticker)
        # Unsubscribed but still listed (FINAL_SETTLEMENT): its market info stays, with its status.
        self._collector.forget_market(ticker, self.universe.statuses.get(ticker))

    def handle(self, link: str, raw: str | bytes, received_at: float) -> Control | None:
        # The hot path, one function for both decode paths so the envelope's bookkeeping is written once:
        # the typed decoders first (exporter.state.fastpath), the dict path for whatever they refuse.
        collector = self._collector
        size = len(raw)
        collector.received_bytes += size
        if size > self._max_frame_bytes:
            reject(self._rejects, link, collector.unknown_channel, "oversized", raw[:200])
            return None
        try:
            frame: Any = None
            try:
                envelope = self._envelope(raw)
                name: Any = envelope.channel
                message_id: Any = envelope.message_id
                sub_id: Any = envelope.id
                batched = envelope.type != _T_DATA
                target: ChannelHandler | None = None
                typed = self._typed_contents.get(name)
                contents: Any = None
                if typed is not None:
                    try:
                        contents = typed[0](envelope.contents)
                        if (contents.__class__ is list) is batched:
                            target = typed[1]
                    except CONTENTS_REFUSED:
                        pass
                if target is None:
                    contents = loads(memoryview(envelope.contents))
            except DECODE_ERRORS:
                frame = self._decode(link, raw)
                if frame is None:
                    return None
                frame_type = frame.get("type")
                if frame_type != _T_DATA and frame_type != _T_BATCH:
                    return self._control(link, frame, received_at)
                name = frame.get("channel")
                message_id = frame.get("message_id")
                sub_id = frame.get("id")
                contents = frame.get("contents")
                batched = frame_type == _T_BATCH
                target = None
            route = self._routes.get(name) if name.__class__ is str else None
            if route is None:
                route = self._route(link, name, frame if frame is not None else raw[:200])
                if route is None:
                    return None
            cm, handler, rated = route
            kind = _T_BATCH if batched else _T_DATA
            messages = cm.messages
            count = messages[kind] + 1
            messages[kind] = count
            if not count & _SAMPLE_MASK:  # one data frame in SAMPLE_EVERY: its fields are checked
                self._schema.sample(cm, raw)
            state = self._links.get(link)
            if state is not None and message_id.__class__ is int and message_id == state.ids.fast_next:
                state.ids.fast_next = message_id + 1
            elif self._see(link, message_id, cm, received_at, frame if frame is not None else raw[:200]):
                state = self._links[link]
            else:
                return None
            if rated:
                state.last_data[cm.name] = received_at
            cm.last_message_at = received_at
            ctx = state.ctx
            ctx.cm = cm
            ctx.message_id = message_id
            ctx.received_at = received_at
            if target is None:
                target = handler
            if not batched:
                cm.updates += 1
                target.update(ctx, sub_id, contents)
            elif contents.__class__ is list:
                cm.updates += len(contents)
                target.updates(ctx, sub_id, contents)
            else:
                ctx.invalid("wrong_type", frame if frame is not None else raw[:200])
            cm.processing.observe(self._clock() - received_at)  # type: ignore[union-attr]
            return None
        except Exception as error:  # a bug here must not take the feed loop down with it
            reject(self._rejects, link, collector.unknown_channel, "processing_error", raw[:200], error)
            return None

    def _decode(self, link: str, raw: str | bytes) -> dict[str, Any] | None:
        """A frame the typed decoders refuse, as a dict; None (counted) when it is not a JSON object."""
        unknown = self._collector.unknown_channel
        try:
            frame = loads(raw)
        except JSONDecodeError:
            reject(self._rejects, link, unknown, "not_json", raw[:200])
            return None
        if frame.__class__ is not dict:
            reject(self._rejects, link, unknown, "not_object", raw[:200])
            return None
        return frame

    def _control(self, link: str, frame: dict[str, Any], now: float) -> Control | None:
        event = parse_control(link, frame)
        collector = self._collector
        if isinstance(event, Rejected):
            if event.channel is None:
                reject(self._rejects, link, collector.unknown_channel, event.reason, frame)
            else:  # a known channel's `subscribed` with a bad id: counted, then refused
                cm = self._route_of(event.channel)[0]
                cm.messages[ch.T_SUBSCRIBED] += 1
                if self._see(link, frame.get("message_id"), cm, now, frame):
                    reject(self._rejects, link, cm, event.reason, frame)
            return None
        if isinstance(event, Subscribed):
            cm, handler, _ = self._route_of(event.channel)
            cm.messages[ch.T_SUBSCRIBED] += 1
            if not self._see(link, event.message_id, cm, now, frame):
                return None
            state = self._links[link]
            state.last_data[cm.name] = now
            cm.last_message_at = now
            ctx = state.ctx
            ctx.cm = cm
            ctx.message_id = event.message_id
            ctx.received_at = now
            self._schema.snapshot(cm, frame.get("contents"))
            handler.snapshot(ctx, event.sub_id, frame.get("contents"))
            cm.processing.observe(self._clock() - now)  # type: ignore[union-attr]
            return event
        if isinstance(event, Connected):
            collector.no_channel.messages[ch.T_CONNECTED] += 1
            self.link_opened(link)
            self._see(link, frame.get("message_id"), collector.unknown_channel, now, frame)
            return event
        if isinstance(event, Unsubscribed):
            cm, handler, _ = self._route_of(event.channel)
            cm.messages[ch.T_UNSUBSCRIBED] += 1
            self._see(link, frame.get("message_id"), cm, now, frame)
            ctx = self._link(link).ctx
            ctx.cm = cm
            ctx.received_at = now
            handler.unsubscribed(ctx, event.sub_id)
            return event
        assert isinstance(event, ServerError)
        known = event.channel is not None
        target = collector.channel(event.channel) if event.channel is not None else collector.no_channel
        target.messages[ch.T_ERROR] += 1
        self._see(link, frame.get("message_id"), target if known else collector.unknown_channel, now, frame)
        collector.server_error(event.reason)
        return event

    # --- routing and message ids ----------------------------------------------------------------------
    def _route_of(self, name: str) -> _Route:
        route = self._routes.get(name)
        if route is None:
            spec = ch.CHANNELS[name]
            route = self._routes[name] = (self._collector.channel(name), self._handlers[name], spec.rated)
        return route

    def _route(self, link: str, name: object, frame: object) -> _Route | None:
        """The route of a data frame's channel seen for the first time; None (counted) if it has none."""
        if name.__class__ is str and name in self._handlers:
            return self._route_of(name)
        reason = "missing_field" if name is None else "unknown_channel"
        reject(self._rejects, link, self._collector.unknown_channel, reason, frame)
        return None

    def _link(self, link: str) -> _Link:
        state = self._links.get(link)
        if state is None:
            state = self._links[link] = _Link(
                link, self._id_grace, self._collector.unknown_channel, self._rejects
            )
        return state

    def _see(self, link: str, message_id: object, cm: ChannelMetrics, now: float, frame: object) -> bool:
        """The message-id check off the in-order path (holes, late frames, a fresh connection)."""
        ids = self._link(link).ids
        if not isinstance(message_id, int) or message_id < 0 or not ids.see(message_id, now):
            reject(self._rejects, link, cm, "bad_message_id", frame)
            return False
        if ids.lost:
            self._collector.message_id_gaps += ids.lost
            ids.lost = 0
        return True

    # --- the universe ---------------------------------------------------------------------------------
    def _follow(self, change: MarketsChanged) -> None:
        for ticker in change.delisted:
            self.forget_market(ticker)

    # --- readiness ------------------------------------------------------------------------------------
    def stale_channels(self, now: float, channels: Iterable[str]) -> list[str]:
        """Why the data of `channels` (those with active subscriptions) is not fresh: one reason per channel
        expected to flow that has sent no frame for --data.stale-after. Quiet channels are exempt."""
        reasons = []
        for name in channels:
            spec = ch.CHANNELS.get(name)
            if spec is None or spec.quiet:
                continue
            route = self._routes.get(name)
            last = route[0].last_message_at if route is not None else 0.0
            if not last:
                reasons.append(f"{name}: no data received yet")
            elif now - last > self._stale_after:
                reasons.append(f"{name}: no data for {now - last:.1f}s (stale after {self._stale_after:g}s)")
        return reasons
