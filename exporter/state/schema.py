"""Schema drift: fields the exporter does not know, in snapshots and in a sample of updates.

Venue releases add and rename fields (reference §8); a renamed or missing field the exporter needs is
already counted invalid by its handler, but an added one passes unseen. Every snapshot (cold: one per
subscribe) and one data frame in SAMPLE_EVERY per channel (re-decoded off the hot path's typed structs,
which ignore unknown fields) are checked against the fields of reference §3: each unknown name counts in
dydx_schema_unknown_fields_total{channel} and is logged once (`schema_unknown_field`), never a label.
Nested objects are checked one level down (a market object, a trade row, an oracle row, a candle).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from exporter.logs import get_logger
from exporter.metrics.channels import ChannelMetrics
from exporter.protocol import channels as ch
from exporter.protocol.frames import JSONDecodeError, loads

log = get_logger(__name__)

#: One data frame in this many, per channel, is checked (a power of two: the hot path masks a counter).
SAMPLE_EVERY: Final = 1024
SAMPLE_MASK: Final = SAMPLE_EVERY - 1

_MARKET: Final = frozenset({
    "id", "clobPairId", "ticker", "marketId", "status", "oraclePrice", "priceChange24H", "volume24H",
    "trades24H", "nextFundingRate", "initialMarginFraction", "maintenanceMarginFraction", "openInterest",
    "atomicResolution", "quantumConversionExponent", "tickSize", "stepSize", "stepBaseQuantums",
    "subticksPerTick", "marketType", "openInterestLowerCap", "openInterestUpperCap", "baseOpenInterest",
    "defaultFundingRate1H", "liquidityTierId",
})  # fmt: skip
_TRADE: Final = frozenset({"id", "side", "size", "price", "type", "createdAt", "createdAtHeight"})
_ORACLE: Final = frozenset({"oraclePrice", "effectiveAt", "effectiveAtHeight", "marketId"})
_CANDLE: Final = frozenset({
    "id", "startedAt", "ticker", "resolution", "low", "high", "open", "close", "baseTokenVolume", "usdVolume",
    "trades", "startingOpenInterest", "orderbookMidPriceOpen", "orderbookMidPriceClose",
})  # fmt: skip
_SUBACCOUNT_UPDATE: Final = frozenset({
    "perpetualPositions", "assetPositions", "orders", "fills", "transfers", "tradingReward", "blockHeight",
    "subaccountNumber",
})  # fmt: skip

#: channel → (top-level fields, {field: fields of each object under it (a mapping's values or a list)}).
Shape = tuple[frozenset[str], Mapping[str, frozenset[str]]]
SNAPSHOTS: Final[Mapping[str, Shape]] = {
    ch.ORDERBOOK: (frozenset({"bids", "asks"}), {"bids": frozenset({"price", "size"}),
                                                  "asks": frozenset({"price", "size"})}),
    ch.TRADES: (frozenset({"trades"}), {"trades": _TRADE}),
    ch.MARKETS: (frozenset({"markets"}), {"markets": _MARKET}),
    ch.CANDLES: (frozenset({"candles"}), {"candles": _CANDLE}),
    ch.BLOCK_HEIGHT: (frozenset({"height", "time"}), {}),
    ch.SUBACCOUNTS: (frozenset({"subaccount", "orders", "blockHeight"}), {}),
}  # fmt: skip
UPDATES: Final[Mapping[str, Shape]] = {
    ch.ORDERBOOK: (frozenset({"bids", "asks"}), {}),
    ch.TRADES: (frozenset({"trades"}), {"trades": _TRADE}),
    ch.MARKETS: (frozenset({"trading", "oraclePrices"}), {"trading": _MARKET, "oraclePrices": _ORACLE}),
    ch.CANDLES: (_CANDLE, {}),
    ch.BLOCK_HEIGHT: (frozenset({"blockHeight", "time"}), {}),
    ch.SUBACCOUNTS: (_SUBACCOUNT_UPDATE, {}),
}


class SchemaWatch:
    def __init__(self) -> None:
        self._logged: set[tuple[str, str]] = set()

    def snapshot(self, cm: ChannelMetrics, contents: Any) -> None:
        shape = SNAPSHOTS.get(cm.name)
        if shape is not None:
            self._check(cm, shape, contents)

    def sample(self, cm: ChannelMetrics, raw: str | bytes) -> None:
        """One data frame of `cm`'s channel, whole (its contents: an update, or a batch of them)."""
        shape = UPDATES.get(cm.name)
        if shape is None:
            return
        try:
            frame = loads(raw)
        except JSONDecodeError:
            return  # the frame itself is the router's business, not the schema's
        contents = frame.get("contents") if frame.__class__ is dict else None
        for update in contents if contents.__class__ is list else (contents,):
            self._check(cm, shape, update)

    def _check(self, cm: ChannelMetrics, shape: Shape, contents: Any) -> None:
        if contents.__class__ is not dict:
            return
        top, nested = shape
        self._unknown(cm, contents, top, "")
        for field, known in nested.items():
            value = contents.get(field)
            rows = value.values() if value.__class__ is dict else value if value.__class__ is list else ()
            for row in rows:
                if row.__class__ is dict:
                    self._unknown(cm, row, known, field + ".")
                    break  # one row of each: rows share their shape

    def _unknown(self, cm: ChannelMetrics, obj: dict[str, Any], known: frozenset[str], prefix: str) -> None:
        for name in obj:
            if name not in known:
                cm.unknown_fields += 1
                key = (cm.name, prefix + name)
                if key not in self._logged and len(self._logged) < 1000:
                    self._logged.add(key)
                    log.warning("schema_unknown_field", channel=cm.name, field=prefix + str(name)[:80])
