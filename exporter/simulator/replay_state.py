"""What a replay serves besides the stream: the state of every recorded subscription (books, trades, candles,
markets, block height, subaccounts), reset by each recorded snapshot and kept current with the replayed
updates, so snapshots and REST answers agree with the stream.

Books are `levels.LevelBook`s: the strings the indexer sent, repeated byte for byte.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Mapping
from typing import Any, Final

from exporter.protocol import channels as ch
from exporter.simulator import formats
from exporter.simulator.levels import LevelBook

HISTORY_ROWS: Final = 1000


def _trade_row(trade: Mapping[str, Any]) -> dict[str, Any]:
    """An update's trade as a REST/snapshot row: createdAtHeight from the event id's first 8 hex digits."""
    row = {k: trade.get(k) for k in ("id", "side", "size", "price", "type", "createdAt")}
    trade_id = trade.get("id")
    with contextlib.suppress(TypeError, ValueError):
        row["createdAtHeight"] = str(ch.trade_id_height(str(trade_id)))
    return row


def _shift_iso(value: object, offset: float) -> object:
    if not isinstance(value, str):
        return value
    try:
        return formats.iso_ms(formats.parse_iso(value) + offset)
    except ValueError:
        return value


def retimed(channel: str, contents: Any, offset: float) -> Any:
    """A copy of an update or snapshot with its exchange timestamps (block `time`, trades `createdAt`,
    oracle `effectiveAt`) moved by `offset` seconds; everything else, candles included, as it was."""
    if not isinstance(contents, dict):
        return contents
    out = dict(contents)
    if channel == ch.BLOCK_HEIGHT and "time" in out:
        out["time"] = _shift_iso(out["time"], offset)
    elif channel == ch.TRADES and isinstance(out.get("trades"), list):
        out["trades"] = [
            {**t, "createdAt": _shift_iso(t["createdAt"], offset)}
            if isinstance(t, dict) and "createdAt" in t
            else t
            for t in out["trades"]
        ]
    elif channel == ch.MARKETS and isinstance(out.get("oraclePrices"), dict):
        out["oraclePrices"] = {
            ticker: {**p, "effectiveAt": _shift_iso(p["effectiveAt"], offset)}
            if isinstance(p, dict) and "effectiveAt" in p
            else p
            for ticker, p in out["oraclePrices"].items()
        }
    return out


class ReplayState:
    """What subscribers and REST clients ask for, kept current with the replayed updates."""

    def __init__(self) -> None:
        self.markets: dict[str, dict[str, Any]] = {}
        self.books: dict[str, LevelBook] = {}
        self.trades: dict[str, deque[dict[str, Any]]] = {}
        self.candles: dict[str, list[dict[str, Any]]] = {}
        self.subaccounts: dict[tuple[str, str], Any] = {}
        self.height = 0
        self.height_time = ""
        self.has_block_height = False

    def reset(self, channel: str, key: str | None, contents: Any) -> None:
        """A recorded `subscribed` snapshot: the truth for (channel, key) from here on."""
        if channel == ch.MARKETS:
            markets = contents.get("markets") if isinstance(contents, dict) else None
            if isinstance(markets, dict):
                self.markets = {t: dict(m) for t, m in markets.items() if isinstance(m, dict)}
        elif channel == ch.BLOCK_HEIGHT:
            if isinstance(contents, dict):
                self._set_height(contents.get("height"), contents.get("time"))
                self.has_block_height = True
        elif key is None:
            return
        elif channel == ch.ORDERBOOK:
            self.books.setdefault(key, LevelBook()).reset(contents)
        elif channel == ch.TRADES:
            rows = contents.get("trades") if isinstance(contents, dict) else None
            rows = rows if isinstance(rows, list) else []
            self.trades[key] = deque((dict(r) for r in rows if isinstance(r, dict)), maxlen=HISTORY_ROWS)
        elif channel == ch.CANDLES:
            rows = contents.get("candles") if isinstance(contents, dict) else None
            self.candles[key] = (
                [dict(r) for r in rows if isinstance(r, dict)][:HISTORY_ROWS]
                if isinstance(rows, list)
                else []
            )
        elif channel in (ch.SUBACCOUNTS, ch.PARENT_SUBACCOUNTS):
            self.subaccounts[(channel, key)] = contents

    def apply(self, channel: str, key: str | None, contents: Mapping[str, Any]) -> None:
        """One update (a channel_data `contents`, or one item of a channel_batch_data)."""
        if channel == ch.ORDERBOOK and key is not None:
            self.books.setdefault(key, LevelBook()).apply(contents)
        elif channel == ch.TRADES and key is not None:
            rows = self.trades.setdefault(key, deque(maxlen=HISTORY_ROWS))
            trades = contents.get("trades")
            for trade in trades if isinstance(trades, list) else ():
                if isinstance(trade, dict):
                    row = _trade_row(trade)
                    rows.appendleft(row)
                    if not self.has_block_height and "createdAtHeight" in row:
                        self._set_height(row["createdAtHeight"], row["createdAt"])
        elif channel == ch.MARKETS:
            self._apply_markets(contents)
        elif channel == ch.CANDLES and key is not None:
            candles = self.candles.setdefault(key, [])
            if candles and candles[0].get("startedAt") == contents.get("startedAt"):
                candles[0] = dict(contents)
            else:
                candles.insert(0, dict(contents))
                del candles[HISTORY_ROWS:]
        elif channel == ch.BLOCK_HEIGHT:
            self._set_height(contents.get("blockHeight"), contents.get("time"))
            self.has_block_height = True

    def _apply_markets(self, contents: Mapping[str, Any]) -> None:
        oracle = contents.get("oraclePrices")
        if isinstance(oracle, dict):
            for ticker, price in oracle.items():
                market = self.markets.get(ticker)
                if market is not None and isinstance(price, dict) and "oraclePrice" in price:
                    market["oraclePrice"] = price["oraclePrice"]
        trading = contents.get("trading")
        if isinstance(trading, dict):
            for ticker, fields in trading.items():
                if isinstance(fields, dict):
                    self.markets.setdefault(ticker, {}).update(fields)

    def _set_height(self, height: object, when: object) -> None:
        if isinstance(height, str) and height.isdigit() and int(height) >= self.height:
            self.height = int(height)
            if isinstance(when, str):
                self.height_time = when
