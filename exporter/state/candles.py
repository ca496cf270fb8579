"""v4_candles: per-market freshness, a latency estimate (candles carry no event time of their own), and gaps.

A candle exists for every period in which the chain made blocks: at each boundary the indexer sends the
closed candle and the new one, even without trades (reference §3.4). So a subscribed candle's `startedAt`
moves by exactly one period; a larger jump is a gap (`dydx_candle_gaps_total`, periods skipped), which on
the real feed means periods without blocks (a halt, reference §8). Only what a subscription saw counts:
its snapshot's newest candle starts the count afresh (an outage of the exporter is not the indexer's gap),
and a candle older than the newest seen is a late one, not a gap.
"""

from __future__ import annotations

from typing import Any, Final

from exporter.metrics.markets import MarketMetrics
from exporter.protocol import channels as ch
from exporter.protocol.frames import positive
from exporter.state.context import ChannelHandler, FrameContext, Shared
from exporter.state.universe import valid_ticker

#: Candles are timed against the newest exchange time seen on any channel, but only while that time was
#: itself received this recently (otherwise the estimate would only measure silence).
REFERENCE_MAX_AGE_S: Final = 5.0
_SPEC: Final = ch.CHANNELS[ch.CANDLES]


class CandlesHandler(ChannelHandler):
    def __init__(self, shared: Shared) -> None:
        super().__init__(shared)
        #: subscription id ("BTC-USD/1MIN") → its market's metrics, for the freshness stamp.
        self._markets: dict[str, MarketMetrics] = {}
        #: subscription id → (its resolution, period in seconds, newest startedAt seen).
        self._newest: dict[str, tuple[str, int, float]] = {}

    def snapshot(self, ctx: FrameContext, sub_id: str | None, contents: Any) -> None:
        candles = contents.get("candles") if contents.__class__ is dict else None
        if candles.__class__ is not list:
            ctx.invalid("wrong_type", contents)
            return
        ticker = _SPEC.market_of(sub_id) if sub_id is not None else None
        if sub_id is not None and valid_ticker(ticker):
            market = self._markets[sub_id] = self.shared.collector.market(ticker)  # type: ignore[arg-type]
            market.candles_at = ctx.received_at
            resolution = sub_id.rsplit("/", 1)[-1]
            period = ch.CANDLE_RESOLUTION_SECONDS.get(resolution)
            if period is not None:
                market.candle_gaps.setdefault(resolution, 0)
                newest = candles[0].get("startedAt") if candles and candles[0].__class__ is dict else None
                self._newest[sub_id] = (resolution, period, self.shared.timestamp(newest) or 0.0)

    def update(self, ctx: FrameContext, sub_id: Any, contents: Any) -> None:
        if contents.__class__ is not dict:
            ctx.invalid("wrong_type", contents)
            return
        if positive(contents.get("close")) is None or contents.get("startedAt").__class__ is not str:
            ctx.invalid("bad_number" if "close" in contents else "missing_field", contents)
            return
        now = ctx.received_at
        market = self._markets.get(sub_id) if sub_id.__class__ is str else None
        if market is not None:
            market.candles_at = now
            self._continuity(market, sub_id, contents["startedAt"])
        reference = self.shared.exchange.reference(now, REFERENCE_MAX_AGE_S)
        if reference is not None:
            ctx.cm.latency.observe(now - reference)  # type: ignore[union-attr]

    def _continuity(self, market: MarketMetrics, sub_id: str, started_at: str) -> None:
        known = self._newest.get(sub_id)
        started = self.shared.timestamp(started_at)
        if known is None or started is None:
            return
        resolution, period, newest = known
        if started > newest:
            if newest:
                skipped = round((started - newest) / period) - 1
                if skipped > 0:
                    market.candle_gaps[resolution] += skipped
            self._newest[sub_id] = (resolution, period, started)

    def forget(self, ticker: str) -> None:
        for sub_id in _SPEC.market_ids(ticker, ch.CANDLE_RESOLUTIONS):
            self._markets.pop(sub_id, None)
            self._newest.pop(sub_id, None)
