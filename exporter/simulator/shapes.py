"""The synthetic market's state (markets with integer-tick books, candles, subaccounts) and how each piece
looks on the wire: the REST and snapshot shapes, in comlink's key order. `market.MarketModel` drives it.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from exporter.simulator import formats

#: History kept for snapshots and REST, compactly (a long run must not grow without bound).
TRADE_HISTORY: Final = 1000
CANDLE_HISTORY: Final = 500


@dataclass(slots=True)
class Candle:
    started_at: float
    open: float
    high: float
    low: float
    close: float
    base_volume: float = 0.0
    usd_volume: float = 0.0
    trades: int = 0
    starting_oi: float = 0.0
    mid_open: str | None = None
    mid_close: str | None = None


@dataclass(slots=True)
class Market:
    ticker: str
    clob_pair_id: int
    price: float
    price_decimals: int
    size_decimals: int
    weight: float
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)
    best_bid: int | None = None
    best_ask: int | None = None
    ghost_bid: int | None = None
    status: str = "ACTIVE"
    open_interest: float = 0.0
    volume_24h: float = 0.0
    trades_24h: int = 0
    price_change_24h: float = 0.0
    next_funding_rate: float = 0.0
    #: (id, side, size, price, type, createdAt, createdAtHeight), oldest first.
    trades: deque[tuple[str, str, str, str, str, str, int]] = field(
        default_factory=lambda: deque(maxlen=TRADE_HISTORY)
    )
    candles: dict[str, Candle] = field(default_factory=dict)
    candle_history: dict[str, deque[Candle]] = field(default_factory=dict)

    @property
    def tick_size(self) -> str:
        return formats.fixed(1, self.price_decimals)

    @property
    def step_size(self) -> str:
        return formats.fixed(1, self.size_decimals)

    def mid_ticks(self) -> int:
        return round(self.price * 10.0**self.price_decimals)

    def fmt_price(self, ticks: int) -> str:
        return formats.fixed(ticks, self.price_decimals)

    def fmt_size(self, steps: int) -> str:
        return formats.fixed(steps, self.size_decimals)

    def oracle_price(self, factor: float = 1.0) -> str:
        """The oracle price text; `factor` skews it (fault oracle_skew)."""
        return formats.decimal(self.price * factor, self.price_decimals + 2)

    def book_mid(self) -> str | None:
        if self.best_bid is None or self.best_ask is None:
            return None
        return formats.decimal(
            (self.best_bid + self.best_ask) / 2 / 10**self.price_decimals, self.price_decimals + 1
        )


@dataclass(slots=True)
class Subaccount:
    address: str
    number: int
    equity: float
    subaccount_id: str
    orders: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))


def uuid4(rng: random.Random) -> str:
    return "-".join(f"{rng.getrandbits(4 * n):0{n}x}" for n in (8, 4, 4, 4, 12))


def address(rng: random.Random) -> str:
    """A dydx1 address: 38 characters of bech32's alphabet (not a valid checksum: nothing verifies one)."""
    return "dydx1" + "".join(rng.choice("qpzry9x8gf2tvdw0s3jn54khce6mua7l") for _ in range(38))


def price_decimals_for(price: float) -> int:
    """Tick size ≈ 1e-4 of the price, a power of ten (BTC 1, ETH 0.1, SOL 0.01, DOGE 0.00001)."""
    return max(0, math.ceil(-math.log10(price * 1e-4)))


def size_decimals_for(price: float) -> int:
    """Step size worth about 1..10 quote units (BTC 0.0001, ETH 0.001; negative means whole tens)."""
    return math.ceil(math.log10(price)) - 1


def candle_contents(m: Market, resolution: str, c: Candle) -> dict[str, Any]:
    """A candle as v4_candles and REST show it."""
    d = m.price_decimals
    return {
        "startedAt": formats.iso_ms(c.started_at),
        "ticker": m.ticker,
        "resolution": resolution,
        "low": formats.decimal(c.low, d),
        "high": formats.decimal(c.high, d),
        "open": formats.decimal(c.open, d),
        "close": formats.decimal(c.close, d),
        "baseTokenVolume": formats.decimal(c.base_volume, max(m.size_decimals, 0)),
        "usdVolume": formats.decimal(c.usd_volume, 6),
        "trades": c.trades,
        "startingOpenInterest": formats.decimal(c.starting_oi, max(m.size_decimals, 0)),
        "orderbookMidPriceOpen": c.mid_open,
        "orderbookMidPriceClose": c.mid_close,
    }


def subaccount_snapshot(sub: Subaccount, block_height: int) -> dict[str, Any]:
    """A subaccount as its v4_subaccounts snapshot shows it."""
    return {
        "subaccount": {
            "address": sub.address,
            "subaccountNumber": sub.number,
            "equity": formats.decimal(sub.equity, 6),
            "freeCollateral": formats.decimal(sub.equity * 0.8, 6),
            "openPerpetualPositions": {},
            "assetPositions": {
                "USDC": {
                    "symbol": "USDC",
                    "side": "LONG",
                    "size": formats.decimal(sub.equity, 6),
                    "assetId": "0",
                    "subaccountNumber": sub.number,
                }
            },
            "marginEnabled": True,
            "updatedAtHeight": str(block_height),
            "latestProcessedBlockHeight": str(block_height),
        },
        "orders": [o for o in sub.orders if o["status"] == "OPEN"],
        "blockHeight": str(block_height),
    }


def market_object(m: Market) -> dict[str, Any]:
    """The REST perpetualMarkets object, in comlink's key order."""
    return {
        "clobPairId": str(m.clob_pair_id),
        "ticker": m.ticker,
        "status": m.status,
        "oraclePrice": m.oracle_price(),
        "priceChange24H": formats.decimal(m.price_change_24h, m.price_decimals),
        "volume24H": formats.decimal(m.volume_24h, 2),
        "trades24H": m.trades_24h,
        "nextFundingRate": formats.decimal(m.next_funding_rate, 10),
        "initialMarginFraction": "0.05" if m.weight > 0.3 else "0.1",
        "maintenanceMarginFraction": "0.03" if m.weight > 0.3 else "0.05",
        "openInterest": formats.decimal(m.open_interest, max(m.size_decimals, 0)),
        "atomicResolution": -(m.size_decimals + 6),
        "quantumConversionExponent": -9,
        "tickSize": m.tick_size,
        "stepSize": m.step_size,
        "stepBaseQuantums": 1_000_000,
        "subticksPerTick": 100_000,
        "marketType": "CROSS" if m.weight > 0.05 else "ISOLATED",
        "openInterestLowerCap": "0",
        "openInterestUpperCap": "0",
        "baseOpenInterest": formats.decimal(m.open_interest, max(m.size_decimals, 0)),
        "defaultFundingRate1H": "0",
    }


def parent_subaccount_snapshot(
    address: str, parent: int, children: list[Subaccount], block_height: int
) -> dict[str, Any]:
    """A parent subaccount (its children's sum) as its v4_parent_subaccounts snapshot shows it."""
    if not children:
        return {}
    return {
        "subaccount": {
            "address": address,
            "parentSubaccountNumber": parent,
            "equity": formats.decimal(sum(s.equity for s in children), 6),
            "freeCollateral": formats.decimal(sum(s.equity for s in children) * 0.8, 6),
            "childSubaccounts": [subaccount_snapshot(s, block_height)["subaccount"] for s in children],
        },
        "orders": [o for s in children for o in s.orders if o["status"] == "OPEN"],
        "blockHeight": str(block_height),
    }
