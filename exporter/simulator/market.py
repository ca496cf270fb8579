"""The synthetic market: a seeded, deterministic stand-in for the dYdX chain as the indexer publishes it.

Per tick, orderbook level updates (one level per update, absolute sizes, normally uncrossed). Per block:
oracle prices (random walk, one update per changed market), trades (event ids that encode the height),
candles for every resolution (two frames at a boundary), subaccount updates and the block height; every
`trading_interval` seconds a `trading` diff. Activity is Zipf-like over the market list, BTC-USD and
ETH-USD the most active. The sequence of events depends only on the seed and the number of ticks.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from exporter.protocol import channels as ch
from exporter.simulator import formats
from exporter.simulator.catalog import DEFAULT_MARKET_COUNT, REAL_MARKETS
from exporter.simulator.shapes import (
    CANDLE_HISTORY,
    Candle,
    Market,
    Subaccount,
    address,
    candle_contents,
    market_object,
    parent_subaccount_snapshot,
    price_decimals_for,
    size_decimals_for,
    subaccount_snapshot,
    uuid4,
)
from exporter.simulator.source import Publisher, valid_market_subscription

#: Baseline activity at rate 1.0, across all markets.
BOOK_UPDATES_PER_S: Final = 400.0
TRADES_PER_S: Final = 25.0
MIN_LEVELS: Final = 105
MAX_LEVELS: Final = 160
INITIAL_LEVELS: Final = 130
MAX_TICK_S: Final = 0.05
#: Chance of each of ch.TRADE_TYPES, in its order.
_TRADE_TYPE_WEIGHTS: Final = (0.97, 0.02, 0.005, 0.005)


@dataclass(frozen=True, slots=True)
class MarketConfig:
    seed: int = 1
    markets: int | tuple[str, ...] = DEFAULT_MARKET_COUNT
    block_time: float = 1.0
    rate: float = 1.0
    trading_interval: float = ch.TRADING_DIFF_INTERVAL_S
    subaccounts: int = 1


class MarketModel:
    """The synthetic EventSource. Not thread-safe; lives on the server's event loop."""

    def __init__(self, config: MarketConfig, publisher: Publisher) -> None:
        self.config = config
        self._pub = publisher
        self._rng = random.Random(config.seed)
        self.ticks_per_block = max(1, round(config.block_time / MAX_TICK_S))
        self.tick_interval = config.block_time / self.ticks_per_block
        self.markets: dict[str, Market] = {}
        self._order: list[str] = []
        self._cum_weights: list[float] = []
        self._tick = 0
        self.block_height = 1_000_000 + self._rng.randrange(1_000_000)
        self.block_at = 0.0
        self._blocks_per_trading = max(1, round(config.trading_interval / config.block_time))
        self._time_set = False
        tickers = self._initial_tickers(config.markets)
        for index, (ticker, price) in enumerate(tickers):
            self._add_market(ticker, price, index)
        self._reweight()
        self.subaccounts = [self._make_subaccount(i) for i in range(config.subaccounts)]
        self._subaccounts_by_id = {f"{s.address}/{s.number}": s for s in self.subaccounts}
        #: Markets a `cross` fault with `recross` keeps crossed → the crossed ask last published for it.
        self._kept_crossed: dict[str, int | None] = {}
        #: Oracle faults (faults/quality.py): ticker → None (frozen: no oracle updates) or a skew ratio.
        self.oracle_faults: dict[str, float | None] = {}

    # ---- construction ----
    def _initial_tickers(self, markets: int | tuple[str, ...]) -> list[tuple[str, float]]:
        known = dict(REAL_MARKETS)
        if isinstance(markets, tuple):
            return [(t, known.get(t) or self._synthetic_price()) for t in markets]
        chosen = list(REAL_MARKETS[:markets])
        chosen.extend((f"SYN{n + 1:03d}-USD", self._synthetic_price()) for n in range(len(chosen), markets))
        return chosen

    def _synthetic_price(self) -> float:
        return float(f"{10 ** self._rng.uniform(-3, 3):.4g}")

    def _add_market(self, ticker: str, price: float, index: int) -> Market:
        market = Market(
            ticker=ticker,
            clob_pair_id=index,
            price=price,
            price_decimals=price_decimals_for(price),
            size_decimals=size_decimals_for(price),
            weight=1.0 / (index + 1) ** 1.1,
        )
        rng = self._rng
        market.open_interest = round(rng.uniform(1e5, 5e7) * market.weight / price, 4)
        market.volume_24h = round(rng.uniform(1e6, 5e8) * market.weight, 2)
        market.trades_24h = int(rng.uniform(1e3, 2e5) * market.weight)
        market.next_funding_rate = rng.uniform(-2e-5, 3e-5)
        mid = market.mid_ticks()
        spacing = max(1, mid // 20000)
        for i in range(1, INITIAL_LEVELS + 1):
            if rng.random() < 0.9:
                market.bids[mid - i * spacing] = self._random_size(market)
            if rng.random() < 0.9:
                market.asks[mid + i * spacing] = self._random_size(market)
        market.best_bid = max(market.bids) if market.bids else None
        market.best_ask = min(market.asks) if market.asks else None
        self.markets[ticker] = market
        return market

    def _random_size(self, market: Market) -> int:
        # Notional of a level ~ exponential around 2000 quote units, at least one step.
        step_value = market.price * 10.0**-market.size_decimals
        return 1 + int(self._rng.expovariate(step_value / 2000.0))

    def _make_subaccount(self, index: int) -> Subaccount:
        rng = random.Random(f"{self.config.seed}-subaccount-{index}")
        return Subaccount(
            address=address(rng), number=0, equity=round(rng.uniform(1e3, 1e6), 2), subaccount_id=uuid4(rng)
        )

    def _reweight(self) -> None:
        self._order = [t for t, m in self.markets.items() if m.status == "ACTIVE"]
        self._cum_weights = list(itertools.accumulate(self.markets[t].weight for t in self._order))

    # ---- EventSource: time ----
    def advance(self, exchange_now: float) -> None:
        if not self._time_set:
            self._time_set = True
            self.block_at = exchange_now
            for market in self.markets.values():
                self._open_candles(market, exchange_now)
        self._tick += 1
        self._book_updates(self.config.rate * BOOK_UPDATES_PER_S * self.tick_interval)
        if self._tick % self.ticks_per_block == 0:
            self._block(exchange_now)
        for ticker in self._kept_crossed:
            self._cross_again(ticker, force=False)

    def _poisson(self, mean: float) -> int:
        if mean <= 0:
            return 0
        if mean > 50:
            return max(0, round(self._rng.gauss(mean, math.sqrt(mean))))
        limit, k, p = math.exp(-mean), 0, self._rng.random()
        while p > limit:
            k += 1
            p *= self._rng.random()
        return k

    def _pick(self, n: int) -> list[str]:
        if n <= 0 or not self._order:
            return []
        return self._rng.choices(self._order, cum_weights=self._cum_weights, k=n)

    # ---- orderbook ----
    def _book_updates(self, mean: float) -> None:
        for ticker in self._pick(self._poisson(mean)):
            self._book_update(self.markets[ticker])

    def _book_update(self, m: Market) -> None:
        rng = self._rng
        is_bid = rng.random() < 0.5
        spacing = max(1, m.mid_ticks() // 20000)
        distance = 1 + int(rng.expovariate(0.15))
        mid = m.mid_ticks()
        if is_bid:
            price = mid - distance * spacing
            if m.best_ask is not None and price >= m.best_ask:
                if m.ghost_bid is None:
                    self._set_level(m, False, m.best_ask, 0)
                return
            book = m.bids
        else:
            price = mid + distance * spacing
            if m.ghost_bid is not None and price <= m.ghost_bid:
                return
            if m.best_bid is not None and price <= m.best_bid:
                self._set_level(m, True, m.best_bid, 0)
                return
            book = m.asks
        if price <= 0:
            return
        if price in book and len(book) > MIN_LEVELS and rng.random() < 0.3:
            self._set_level(m, is_bid, price, 0)
        else:
            self._set_level(m, is_bid, price, self._random_size(m))
        if len(book) < MIN_LEVELS:
            worst = min(book) if is_bid else max(book)
            far = (
                worst - spacing * (1 + rng.randrange(3))
                if is_bid
                else worst + spacing * (1 + rng.randrange(3))
            )
            if far > 0:
                self._set_level(m, is_bid, far, self._random_size(m))
        elif len(book) > MAX_LEVELS:
            self._set_level(m, is_bid, min(book) if is_bid else max(book), 0)

    def _set_level(self, m: Market, is_bid: bool, price: int, size: int) -> None:
        """Apply one absolute level and publish it (one level per update, as vulcan does)."""
        book = m.bids if is_bid else m.asks
        if size > 0:
            book[price] = size
            if is_bid:
                if m.best_bid is None or price > m.best_bid:
                    m.best_bid = price
            elif m.best_ask is None or price < m.best_ask:
                m.best_ask = price
        else:
            if book.pop(price, None) is None:
                return
            if is_bid and price == m.best_bid:
                m.best_bid = max(book) if book else None
            elif not is_bid and price == m.best_ask:
                m.best_ask = min(book) if book else None
        side = "bids" if is_bid else "asks"
        self._pub.publish(ch.ORDERBOOK, m.ticker, {side: [[m.fmt_price(price), m.fmt_size(size)]]})

    # ---- blocks ----
    def _block(self, now: float) -> None:
        previous = self.block_at
        self.block_height += 1
        self.block_at = now
        when = formats.iso_ms(now)
        height = str(self.block_height)
        self._oracle(now, when, height)
        self._trades(now, when)
        self._candle_boundaries(previous, now)
        self._subaccount_updates(when, height)
        if self.block_height % self._blocks_per_trading == 0:
            self._trading_diff()
        self._pub.publish(ch.BLOCK_HEIGHT, ch.BLOCK_HEIGHT_ID, {"blockHeight": height, "time": when})

    def _oracle(self, now: float, when: str, height: str) -> None:
        rng = self._rng
        top = self._cum_weights[0] if self._cum_weights else 1.0
        for ticker in self._order:
            m = self.markets[ticker]
            if rng.random() > 0.25 + 0.7 * m.weight / top:
                continue
            m.price *= math.exp(rng.gauss(0.0, 0.0004))
            skew = self.oracle_faults.get(ticker, 0.0)
            if skew is None:
                continue  # frozen: the price walks on in the book and trades, the oracle is silent
            self._pub.publish(
                ch.MARKETS,
                None,
                {
                    "oraclePrices": {
                        ticker: {
                            "oraclePrice": m.oracle_price(1.0 + skew),
                            "effectiveAt": when,
                            "effectiveAtHeight": height,
                            "marketId": m.clob_pair_id,
                        }
                    }
                },
            )

    def _trades(self, now: float, when: str) -> None:
        rng = self._rng
        picked = self._pick(self._poisson(self.config.rate * TRADES_PER_S * self.config.block_time))
        by_market: dict[str, list[dict[str, Any]]] = {}
        for tx_index, ticker in enumerate(picked):
            m = self.markets[ticker]
            buy = rng.random() < 0.5
            level = m.best_ask if buy else m.best_bid
            if level is not None and level == m.ghost_bid:
                level = None  # a crossed ghost level is stale: nothing trades against it
            ticks = level if level is not None else m.mid_ticks()
            book_size = (m.asks if buy else m.bids).get(ticks, 0)
            steps = max(1, min(self._random_size(m) // 4 + 1, book_size or 1))
            trade_type = rng.choices(ch.TRADE_TYPES, _TRADE_TYPE_WEIGHTS)[0]
            trade = {
                "id": f"{self.block_height:08x}{tx_index + 2:08x}{rng.randrange(8):08x}",
                "size": m.fmt_size(steps),
                "price": m.fmt_price(ticks),
                "side": "BUY" if buy else "SELL",
                "createdAt": when,
                "type": trade_type,
            }
            by_market.setdefault(ticker, []).append(trade)
            self._fill(m, ticks, steps, now)
            if level is not None and book_size:
                self._set_level(m, not buy, level, book_size - steps)
        for ticker, trades in by_market.items():
            m = self.markets[ticker]
            m.trades.extend(
                (t["id"], t["side"], t["size"], t["price"], t["type"], t["createdAt"], self.block_height)
                for t in trades
            )
            self._pub.publish(ch.TRADES, ticker, {"trades": trades})
            for resolution in ch.CANDLE_RESOLUTIONS:
                self._publish_candle(m, resolution)

    def _fill(self, m: Market, ticks: int, steps: int, now: float) -> None:
        price = ticks / 10**m.price_decimals
        size = steps * 10.0**-m.size_decimals
        m.trades_24h += 1
        m.volume_24h += price * size
        for candle in m.candles.values():
            candle.high = max(candle.high, price)
            candle.low = min(candle.low, price)
            candle.close = price
            candle.base_volume += size
            candle.usd_volume += price * size
            candle.trades += 1

    # ---- candles ----
    def _open_candles(self, m: Market, now: float) -> None:
        for resolution, seconds in ch.CANDLE_RESOLUTION_SECONDS.items():
            m.candles[resolution] = self._new_candle(m, now - now % seconds, m.price)
            m.candle_history.setdefault(resolution, deque(maxlen=CANDLE_HISTORY))

    def _new_candle(self, m: Market, started_at: float, price: float) -> Candle:
        # A candle opens flat: open, high, low and close are all the price.
        return Candle(
            started_at, price, price, price, price, starting_oi=m.open_interest, mid_open=m.book_mid()
        )

    def _candle_boundaries(self, previous: float, now: float) -> None:
        if now <= previous:
            return  # the clock stepped back (a lag fault began): keep the open candles until it catches up
        for resolution, seconds in ch.CANDLE_RESOLUTION_SECONDS.items():
            if int(previous // seconds) == int(now // seconds):
                continue
            started = now - now % seconds
            for ticker in self._order:
                m = self.markets[ticker]
                old = m.candles.get(resolution)
                if old is None:
                    continue
                old.mid_close = m.book_mid()
                self._publish_candle(m, resolution)
                m.candle_history[resolution].append(old)
                m.candles[resolution] = self._new_candle(m, started, old.close)
                self._publish_candle(m, resolution)

    def _publish_candle(self, m: Market, resolution: str) -> None:
        candle = m.candles.get(resolution)
        if candle is not None:
            self._pub.publish(
                ch.CANDLES, ch.candle_id(m.ticker, resolution), candle_contents(m, resolution, candle)
            )

    # ---- trading diffs, subaccounts ----
    def _trading_diff(self) -> None:
        rng = self._rng
        diff: dict[str, dict[str, Any]] = {}
        for ticker in self._order:
            m = self.markets[ticker]
            if rng.random() < 0.2:
                continue
            m.price_change_24h = m.price * rng.gauss(0.0, 0.03)
            m.open_interest = max(0.0, m.open_interest * (1 + rng.gauss(0.0, 0.002)))
            m.next_funding_rate = rng.uniform(-2e-5, 3e-5)
            diff[ticker] = {
                "priceChange24H": formats.decimal(m.price_change_24h, m.price_decimals),
                "volume24H": formats.decimal(m.volume_24h, 2),
                "trades24H": m.trades_24h,
                "nextFundingRate": formats.decimal(m.next_funding_rate, 10),
                "openInterest": formats.decimal(m.open_interest, max(m.size_decimals, 0)),
            }
        if diff:
            self._pub.publish(ch.MARKETS, None, {"trading": diff})

    def _subaccount_updates(self, when: str, height: str) -> None:
        rng = self._rng
        for sub in self.subaccounts:
            if rng.random() > 0.2 or not self._order:
                continue
            m = self.markets[self._order[min(len(self._order) - 1, int(rng.expovariate(0.3)))]]
            order = {
                "id": uuid4(rng),
                "subaccountId": sub.subaccount_id,
                "clientId": str(rng.randrange(2**31)),
                "clobPairId": str(m.clob_pair_id),
                "side": "BUY" if rng.random() < 0.5 else "SELL",
                "size": m.fmt_size(1 + rng.randrange(10)),
                "price": m.fmt_price(m.mid_ticks()),
                "status": rng.choice(("OPEN", "FILLED", "CANCELED", "BEST_EFFORT_CANCELED")),
                "type": "LIMIT",
                "timeInForce": "GTT",
                "postOnly": False,
                "reduceOnly": False,
                "orderFlags": "64",
                "goodTilBlockTime": when,
                "totalFilled": "0",
                "ticker": m.ticker,
            }
            sub.orders.append(order)
            contents = {"orders": [order], "blockHeight": height}
            self._pub.publish(ch.SUBACCOUNTS, f"{sub.address}/{sub.number}", contents)
            parent = sub.number % ch.MAX_PARENT_SUBACCOUNT_NUMBER
            self._pub.publish(
                ch.PARENT_SUBACCOUNTS,
                f"{sub.address}/{parent}",
                contents,
                b',"subaccountNumber":%d' % sub.number,
            )

    # ---- EventSource: subscriptions and REST ----
    def tickers(self) -> list[str]:
        return list(self.markets)

    def height(self) -> tuple[int, float]:
        return self.block_height, self.block_at

    def valid(self, channel: str, key: str | None) -> bool:
        verdict = valid_market_subscription(channel, key, self.markets)
        if verdict is not None:
            return verdict
        if key is None:
            return False
        address, _, number = key.rpartition("/")
        limit = ch.MAX_SUBACCOUNT_NUMBER if channel == ch.SUBACCOUNTS else ch.MAX_PARENT_SUBACCOUNT_NUMBER
        return bool(ch.ADDRESS_RE.match(address)) and number.isdigit() and int(number) < limit

    def snapshot(self, channel: str, key: str | None) -> Any:
        if channel == ch.MARKETS:
            return {"markets": self.rest_markets(None, ch.REST_MAX_LIMIT)["markets"]}  # type: ignore[index]
        if channel == ch.BLOCK_HEIGHT:
            return {"height": str(self.block_height), "time": formats.iso_ms(self.block_at)}
        assert key is not None
        if channel == ch.ORDERBOOK:
            return self.rest_orderbook(key)
        if channel == ch.TRADES:
            return {"trades": self.rest_trades(key)}
        if channel == ch.CANDLES:
            ticker, _, resolution = key.rpartition("/")
            return {"candles": self.rest_candles(ticker, resolution)}
        if channel == ch.SUBACCOUNTS:
            sub = self._subaccounts_by_id.get(key)
            return subaccount_snapshot(sub, self.block_height) if sub else {}
        address, _, parent = key.rpartition("/")
        children = [s for s in self.subaccounts if s.address == address and s.number % 128 == int(parent)]
        return parent_subaccount_snapshot(address, int(parent), children, self.block_height)

    def rest_markets(self, ticker: str | None, limit: int) -> Mapping[str, Any] | None:
        if ticker is not None:
            m = self.markets.get(ticker)
            return None if m is None else {"markets": {ticker: market_object(m)}}
        chosen = itertools.islice(self.markets.values(), limit)
        return {"markets": {m.ticker: market_object(m) for m in chosen}}

    def rest_orderbook(self, ticker: str) -> Mapping[str, Any] | None:
        m = self.markets.get(ticker)
        if m is None:
            return None
        # The ghost level of a `cross` fault is what the REST uncrossing removes; the rest never crosses.
        bids = sorted(m.bids, reverse=True)[: ch.REST_ORDERBOOK_MAX_LEVELS]
        asks = sorted(m.asks)[: ch.REST_ORDERBOOK_MAX_LEVELS]
        if bids and asks and bids[0] >= asks[0]:
            cut = bisect.bisect_right(asks, bids[0])
            asks = asks[cut:]
        return {
            "bids": [{"price": m.fmt_price(p), "size": m.fmt_size(m.bids[p])} for p in bids],
            "asks": [{"price": m.fmt_price(p), "size": m.fmt_size(m.asks[p])} for p in asks],
        }

    def rest_trades(self, ticker: str) -> list[dict[str, Any]] | None:
        m = self.markets.get(ticker)
        if m is None:
            return None
        keys = ("id", "side", "size", "price", "type", "createdAt")
        return [
            {**dict(zip(keys, row[:6], strict=True)), "createdAtHeight": str(row[6])}
            for row in reversed(m.trades)
        ]

    def rest_candles(self, ticker: str, resolution: str) -> list[dict[str, Any]] | None:
        m = self.markets.get(ticker)
        if m is None:
            return None
        history = [*m.candle_history.get(resolution, ()), *filter(None, [m.candles.get(resolution)])]
        return [candle_contents(m, resolution, c) for c in reversed(history)]

    # ---- control ----
    def list_market(self, ticker: str, price: float | None) -> dict[str, Any]:
        if ticker in self.markets:
            raise ValueError(f"market {ticker} is already listed")
        if not ch.TICKER_RE.match(ticker):
            raise ValueError(f"ticker {ticker!r} is not a valid ticker (e.g. NEW-USD)")
        index = max((m.clob_pair_id for m in self.markets.values()), default=-1) + 1
        m = self._add_market(ticker, price or self._synthetic_price(), index)
        m.weight = min(m.weight, 0.02)
        if self._time_set:
            self._open_candles(m, self.block_at)
        self._reweight()
        obj = market_object(m)
        full = {
            "id": str(m.clob_pair_id),
            "clobPairId": str(m.clob_pair_id),
            "ticker": ticker,
            "marketId": m.clob_pair_id,
            "status": m.status,
            "quantumConversionExponent": obj["quantumConversionExponent"],
            "atomicResolution": obj["atomicResolution"],
            "subticksPerTick": obj["subticksPerTick"],
            "stepBaseQuantums": obj["stepBaseQuantums"],
            "initialMarginFraction": obj["initialMarginFraction"],
            "maintenanceMarginFraction": obj["maintenanceMarginFraction"],
            "openInterest": obj["openInterest"],
            "marketType": obj["marketType"],
            "openInterestLowerCap": obj["openInterestLowerCap"],
            "openInterestUpperCap": obj["openInterestUpperCap"],
            "tickSize": obj["tickSize"],
            "stepSize": obj["stepSize"],
            "oraclePrice": obj["oraclePrice"],
            "baseOpenInterest": obj["baseOpenInterest"],
            "defaultFundingRate1H": obj["defaultFundingRate1H"],
        }
        self._pub.publish(ch.MARKETS, None, {"trading": {ticker: full}})
        return obj

    def delist_market(self, ticker: str) -> None:
        if ticker not in self.markets:
            raise KeyError(ticker)
        del self.markets[ticker]
        self._reweight()
        self._pub.publish(ch.MARKETS, None, {"trading": {ticker: {"status": "FINAL_SETTLEMENT"}}})

    def set_status(self, ticker: str, status: str) -> None:
        """A status change (ACTIVE, PAUSED, ...); only ACTIVE markets trade and quote."""
        if ticker not in self.markets:
            raise KeyError(ticker)
        if status not in ch.MARKET_STATUSES:
            raise ValueError(f"status must be one of {', '.join(ch.MARKET_STATUSES)}, not {status!r}")
        self.markets[ticker].status = status
        self._reweight()
        self._pub.publish(ch.MARKETS, None, {"trading": {ticker: {"status": status}}})

    def start_cross(self, ticker: str, keep: bool = False) -> None:
        m = self.markets[ticker]
        if keep:
            self._kept_crossed.setdefault(ticker, None)
        if m.ghost_bid is not None or m.best_ask is None:
            return
        spacing = max(1, m.mid_ticks() // 20000)
        m.ghost_bid = m.best_ask + spacing
        size = self._random_size(m)
        m.bids[m.ghost_bid] = size
        m.best_bid = m.ghost_bid
        self._pub.publish(ch.ORDERBOOK, ticker, {"bids": [[m.fmt_price(m.ghost_bid), m.fmt_size(size)]]})

    def recross(self, ticker: str) -> None:
        self._cross_again(ticker, force=True)

    def _cross_again(self, ticker: str, *, force: bool) -> None:
        """Snapshots (and REST) leave out the asks at or under the ghost bid, and trades eat them: publish
        the best of them again (a level the book really holds) when it changed, or when `force`d for a
        fresh snapshot; when none is left, move the ghost over the best ask and publish that ask too."""
        m = self.markets.get(ticker)
        if m is None or m.ghost_bid is None or m.best_ask is None:
            return
        if m.best_ask > m.ghost_bid:
            ghost, m.ghost_bid = m.ghost_bid, None
            self._set_level(m, True, ghost, 0)
            self.start_cross(ticker)
            force = True
        ask = m.best_ask
        if force or self._kept_crossed.get(ticker) != ask:
            self._pub.publish(ch.ORDERBOOK, ticker, {"asks": [[m.fmt_price(ask), m.fmt_size(m.asks[ask])]]})
        if ticker in self._kept_crossed:
            self._kept_crossed[ticker] = ask

    def end_cross(self, ticker: str) -> None:
        self._kept_crossed.pop(ticker, None)
        m = self.markets.get(ticker)
        if m is None or m.ghost_bid is None:
            return
        ghost, m.ghost_bid = m.ghost_bid, None
        self._set_level(m, True, ghost, 0)
