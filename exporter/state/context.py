"""What every channel handler is given: the frame's context, and the two rules all channels share.

`ChannelHandler` is the interface of a channel's handler (snapshot, update, forget a market).
`FrameContext` says which link a frame came on, its message id and its receipt time, and counts a rejected
update against the frame's channel (dydx_messages_invalid_total{channel,reason}) with a rate-limited log
line. The router keeps one per link and fills in the per-frame fields before calling a handler, so a frame
costs no allocation. `ExchangeClock` is the one place feed latency is observed: it also remembers the
newest exchange time seen on any channel (candles, which carry none, are timed against it).
`one_or_both` is the check of an update object that carries one or both of two parts (an order book
update's sides, a v4_markets update's oracle prices and trading diff).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

from exporter.logs import get_logger
from exporter.metrics.channels import ChannelMetrics
from exporter.metrics.collector import Collector
from exporter.metrics.histogram import Histogram
from exporter.protocol.frames import TimestampParser
from exporter.state.universe import MarketUniverse

log = get_logger(__name__)

LOG_INTERVAL_S: Final = 10.0


class RejectLog:
    """One log line per (channel, reason) per interval, carrying how many were suppressed meanwhile."""

    __slots__ = ("_interval", "_last", "_suppressed")

    def __init__(self, interval: float = LOG_INTERVAL_S) -> None:
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


def reject(
    log_rejects: RejectLog,
    link: str,
    cm: ChannelMetrics,
    reason: str,
    sample: object,
    error: BaseException | None = None,
) -> None:
    """Count and log one rejected frame or update (the only way anything is counted as invalid)."""
    cm.invalid[reason] = cm.invalid.get(reason, 0) + 1
    log_rejects(link, cm.name, reason, sample, error)


class FrameContext:
    """The frame being handled on one link: its channel's metrics, message id and wall-clock receipt."""

    __slots__ = ("cm", "link", "message_id", "received_at", "rejects")

    def __init__(self, link: str, cm: ChannelMetrics, rejects: RejectLog) -> None:
        self.link = link
        self.cm = cm
        self.message_id = 0
        self.received_at = 0.0
        self.rejects = rejects

    def invalid(self, reason: str, sample: object, error: BaseException | None = None) -> None:
        reject(self.rejects, self.link, self.cm, reason, sample, error)


def one_or_both(ctx: FrameContext, contents: Any, first: str, second: str) -> tuple[Any, Any] | None:
    """The two parts of an update object that carries one or both (an order book update's `bids` and
    `asks`, a v4_markets update's `oraclePrices` and `trading`), each None when absent; None, counted,
    when `contents` is not an object (wrong_type) or carries neither (missing_field)."""
    if contents.__class__ is not dict:
        ctx.invalid("wrong_type", contents)
        return None
    one = contents.get(first)
    other = contents.get(second)
    if one is None and other is None:
        ctx.invalid("missing_field", contents)
        return None
    return one, other


@dataclass(slots=True, eq=False)
class ExchangeClock:
    """The newest exchange time seen on any channel, and when it was received."""

    newest: float = 0.0
    received: float = 0.0

    def observe(self, histogram: Histogram, stamp: float, now: float) -> None:
        """An event stamped `stamp` (exchange time) received at `now`: observe its lag in `histogram`."""
        if stamp > self.newest:
            self.newest = stamp
        self.received = now
        histogram.observe(now - stamp)

    def reference(self, now: float, max_age: float) -> float | None:
        """The newest exchange time, if it was itself received within `max_age` of `now`."""
        if self.newest and now - self.received <= max_age:
            return self.newest
        return None


@dataclass(frozen=True, slots=True)
class Shared:
    """What the handlers share, built once by the router."""

    collector: Collector
    universe: MarketUniverse
    exchange: ExchangeClock
    timestamp: TimestampParser


class ChannelHandler:
    """One channel's state and rules. The router calls `snapshot` for a `subscribed` frame and `update`
    for each update of a data frame (`updates` for a batch, once per frame); `forget` drops a market.
    Handlers never raise for bad input: they count it with `ctx.invalid(reason, sample)`."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def snapshot(self, ctx: FrameContext, sub_id: str | None, contents: Any) -> None:
        """The snapshot a `subscribed` frame carries."""

    def update(self, ctx: FrameContext, sub_id: Any, contents: Any) -> None:
        """One update (a channel_data frame's contents, or one element of a batch)."""

    def updates(self, ctx: FrameContext, sub_id: Any, items: list[Any]) -> None:
        """The updates of a channel_batch_data frame."""
        for contents in items:
            self.update(ctx, sub_id, contents)

    def unsubscribed(self, ctx: FrameContext, sub_id: str | None) -> None:
        """The server confirmed an unsubscribe."""

    def link_closed(self, link: str, now: float) -> None:
        """`link` is gone: state it fed is no longer maintained."""

    def forget(self, ticker: str) -> None:
        """The market is delisted or no longer subscribed: drop its state."""
