"""An L2 book as the wire carries it: price text → absolute size text per side, a size of zero removing the
level. The replay serves it back byte for byte (REST views, snapshots) and the ground-truth ledger compares
with it, so prices and sizes stay the strings the indexer sent; the exporter's `exporter.state.book.Book`
keys levels by float for its metrics, which would re-format them, so it is a different class.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from exporter.protocol import channels as ch

#: Levels per side of an orderbook snapshot, as comlink serves it.
BOOK_LEVELS: Final = ch.REST_ORDERBOOK_MAX_LEVELS


def price_key(level: str) -> float:
    try:
        return float(level)
    except ValueError:
        return 0.0


def _is_zero(size: object) -> bool:
    try:
        return float(size) == 0.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


@dataclass(slots=True)
class LevelBook:
    """An L2 book as the feed builds it: price string → absolute size string, per side."""

    bids: dict[str, str] = field(default_factory=dict)
    asks: dict[str, str] = field(default_factory=dict)

    def reset(self, snapshot: object) -> None:
        self.bids.clear()
        self.asks.clear()
        if isinstance(snapshot, dict):
            self._load(self.bids, snapshot.get("bids"))
            self._load(self.asks, snapshot.get("asks"))

    def apply(self, update: Mapping[str, Any]) -> None:
        self._load(self.bids, update.get("bids"))
        self._load(self.asks, update.get("asks"))

    @staticmethod
    def _load(side: dict[str, str], levels: object) -> None:
        if not isinstance(levels, list):
            return
        for level in levels:
            if isinstance(level, dict):
                price, size = level.get("price"), level.get("size")
            elif isinstance(level, list) and len(level) >= 2:
                price, size = level[0], level[1]
            else:
                continue
            if not isinstance(price, str) or not isinstance(size, str):
                continue
            if _is_zero(size):
                side.pop(price, None)
            else:
                side[price] = size

    def view(self) -> dict[str, list[dict[str, str]]]:
        """comlink's orderbook: top levels per side, bids descending, asks ascending, never crossed."""
        bids = sorted(self.bids, key=price_key, reverse=True)[:BOOK_LEVELS]
        asks = sorted(self.asks, key=price_key)[:BOOK_LEVELS]
        if bids and asks and price_key(bids[0]) >= price_key(asks[0]):
            keys = [price_key(p) for p in asks]
            asks = asks[bisect.bisect_right(keys, price_key(bids[0])) :]
        return {
            "bids": [{"price": p, "size": self.bids[p]} for p in bids],
            "asks": [{"price": p, "size": self.asks[p]} for p in asks],
        }
