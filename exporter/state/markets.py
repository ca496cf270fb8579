"""v4_markets: the market list (snapshot, `trading` diffs) into the universe, and oracle prices.

The channel's snapshot is a full market list and its `trading` diffs list markets and change statuses:
both go to the MarketUniverse, which announces the change to everyone following it. This handler follows
it too: a listed market gets its `dydx_market_info` series (when --markets / --shard want it), and the
oracle prices of a full list (REST or the channel's snapshot) are taken in. Oracle price updates, from
either decode path, end in `oracle_price()`: the rule is written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.protocol.frames import positive
from exporter.state.context import ChannelHandler, FrameContext, Shared, one_or_both
from exporter.state.universe import MarketsChanged


class MarketsHandler(ChannelHandler):
    def __init__(self, shared: Shared) -> None:
        super().__init__(shared)
        shared.universe.subscribe(self._follow)
        # Bound once: oracle_price runs for every market of every oracle update.
        self._markets = shared.collector.markets
        self._universe = shared.universe
        self._timestamp = shared.timestamp
        self._observe = shared.exchange.observe

    def snapshot(self, ctx: FrameContext, sub_id: str | None, contents: Any) -> None:
        markets = contents.get("markets") if contents.__class__ is dict else None
        if markets.__class__ is not dict:
            ctx.invalid("wrong_type", contents)
            return
        self.shared.universe.load(markets, ctx.received_at)

    def update(self, ctx: FrameContext, sub_id: Any, contents: Any) -> None:
        parts = one_or_both(ctx, contents, "oraclePrices", "trading")
        if parts is None:
            return
        oracle, trading = parts
        if oracle is not None:
            if oracle.__class__ is not dict:
                ctx.invalid("wrong_type", oracle)
            else:
                for ticker, row in oracle.items():
                    price = positive(row.get("oraclePrice")) if row.__class__ is dict else None
                    if price is None:
                        ctx.invalid("bad_number" if row.__class__ is dict else "wrong_type", row)
                    else:
                        self.oracle_price(ctx, ticker, price, row.get("effectiveAt"))
        if trading is not None:
            if trading.__class__ is not dict:
                ctx.invalid("wrong_type", trading)
            else:
                self.shared.universe.apply_trading(trading, ctx.received_at)

    def oracle_price(self, ctx: FrameContext, ticker: str, price: float, effective_at: object) -> None:
        """A market's new oracle price (> 0, finite), effective at the exchange time `effective_at`."""
        market = self._markets.get(ticker)
        if market is None:
            # Markets outside --markets are listed but not tracked; only a ticker nobody listed is odd.
            if ticker not in self._universe.statuses:
                ctx.invalid("unknown_market", ticker)
            return
        now = ctx.received_at
        market.oracle_price = price
        market.oracle_at = now
        stamp = self._timestamp(effective_at)
        if stamp is None:
            ctx.invalid("bad_number", effective_at)
        else:
            market.oracle_effective_at = stamp
            self._observe(ctx.cm.latency, stamp, now)  # type: ignore[arg-type]

    def _follow(self, change: MarketsChanged) -> None:
        """The universe changed: the info series of the markets listed or changed first, then the oracle
        prices of a full list (freshness stamped only when a frame carried it, not for REST), so a market
        first listed by this very list keeps the price it came with."""
        collector = self.shared.collector
        wants = self.shared.universe.wants
        for ticker in (*change.listed, *change.status_changed):
            if wants(ticker):
                market = collector.market(ticker)
                market.listed = True
                market.status = change.markets[ticker]
        for ticker, row in change.full_list.items():
            price = positive(row.get("oraclePrice")) if isinstance(row, Mapping) else None
            tracked = collector.existing_market(ticker)
            if price is not None and tracked is not None:
                tracked.oracle_price = price
                if change.received_at is not None:
                    tracked.oracle_at = change.received_at
