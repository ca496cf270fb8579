"""Frame shapes of the indexer feed, and the fast, tolerant decoding of their fields.

The hot path works on the dicts orjson returns (no per-frame objects): these TypedDicts document the
shapes, and the helpers below turn wire values into numbers without ever raising. Every helper returns None
for anything that is not what the protocol sends (wrong type, NaN, infinite, negative where sizes and prices
cannot be, unparseable), so callers count it and move on. Encoders for the client → server messages live
here too, so the feed and the simulator share one spelling.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Final, NotRequired, TypedDict

import orjson

from exporter.protocol.channels import CHANNELS_WITHOUT_ID

JSONDecodeError: Final = orjson.JSONDecodeError


class OrderbookLevel(TypedDict):
    price: str
    size: str


class OrderbookSnapshot(TypedDict, total=False):
    bids: list[OrderbookLevel]
    asks: list[OrderbookLevel]


class OrderbookUpdate(TypedDict, total=False):
    """Exactly one `[price, absolute size]` level on one side; size "0" removes the level."""

    bids: list[list[str]]
    asks: list[list[str]]


class Trade(TypedDict):
    id: str
    side: str
    size: str
    price: str
    type: str
    createdAt: str
    createdAtHeight: NotRequired[str]  # snapshot rows only


class OraclePrice(TypedDict):
    oraclePrice: str
    effectiveAt: str
    effectiveAtHeight: str
    marketId: int


class MarketsUpdate(TypedDict, total=False):
    trading: dict[str, dict[str, Any]]
    oraclePrices: dict[str, OraclePrice]


class BlockHeightSnapshot(TypedDict):
    height: str
    time: str


class BlockHeightUpdate(TypedDict):
    blockHeight: str
    time: str


class Frame(TypedDict, total=False):
    type: str
    connection_id: str
    message_id: int
    channel: str
    id: str
    version: str
    contents: Any
    message: str
    subaccountNumber: int


#: orjson.loads itself (no wrapper: this is called for every frame). Raises JSONDecodeError for invalid
#: JSON, invalid UTF-8, NaN/Infinity literals and nesting deeper than 1024; big integers become floats.
loads: Final = orjson.loads


def positive(value: object) -> float | None:
    """A price: a decimal string (or JSON number) that is finite and > 0."""
    if value.__class__ is str:
        try:
            number = float(value)
        except ValueError:
            return None
    elif value.__class__ is float or value.__class__ is int:
        number = float(value)
    else:
        return None
    if 0.0 < number < math.inf:
        return number
    return None


def non_negative(value: object) -> float | None:
    """A size: a decimal string (or JSON number) that is finite and >= 0 ("0" removes a book level)."""
    if value.__class__ is str:
        try:
            number = float(value)
        except ValueError:
            return None
    elif value.__class__ is float or value.__class__ is int:
        number = float(value)
    else:
        return None
    if 0.0 <= number < math.inf:
        return number
    return None


def finite(value: object) -> float | None:
    """A signed amount (equity can be negative): a decimal string (or JSON number) that is finite."""
    if value.__class__ is str:
        try:
            number = float(value)
        except ValueError:
            return None
    elif value.__class__ is float or value.__class__ is int:
        number = float(value)
    else:
        return None
    if -math.inf < number < math.inf:
        return number
    return None


def integer(value: object) -> int | None:
    """A non-negative integer sent as a string (heights) or a JSON int; bools and floats are refused."""
    if value.__class__ is int:
        return value if value >= 0 else None
    if value.__class__ is str and 0 < len(value) <= 20 and value.isascii() and value.isdigit():
        return int(value)
    return None


class TimestampParser:
    """ISO-8601 UTC timestamps (`2026-03-04T19:21:07.512Z`) → Unix seconds, fast.

    Exchange times share their minute with their neighbours, so the epoch of `YYYY-MM-DDTHH:MM` is cached
    and only the seconds are parsed per call (about 0.2 µs instead of 1 µs for datetime.fromisoformat).
    Anything else falls back to datetime.fromisoformat; garbage gives None.
    """

    __slots__ = ("_minutes",)
    _CACHE_LIMIT: Final = 4096

    def __init__(self) -> None:
        self._minutes: dict[str, float] = {}

    def __call__(self, value: object) -> float | None:
        if value.__class__ is not str:
            return None
        text: str = value
        if len(text) < 20 or len(text) > 40 or text[-1] != "Z" or text[16] != ":":
            return self._slow(text)
        base = self._minutes.get(text[:16])
        if base is None:
            base = self._minute_epoch(text[:16])
            if base is None:
                return None
        try:
            seconds = float(text[17:-1])
        except ValueError:
            return None
        if not 0.0 <= seconds < 61.0:
            return None
        return base + seconds

    def _minute_epoch(self, prefix: str) -> float | None:
        try:
            stamp = datetime.strptime(prefix, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC).timestamp()
        except ValueError:
            return None
        if len(self._minutes) >= self._CACHE_LIMIT:
            self._minutes.clear()
        self._minutes[prefix] = stamp
        return stamp

    @staticmethod
    def _slow(text: str) -> float | None:
        if len(text) > 64:
            return None
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            return parsed.timestamp()
        except (OverflowError, OSError, ValueError):
            return None


def encode_subscribe(channel: str, sub_id: str | None = None, *, batched: bool = False) -> bytes:
    """The subscribe message; `sub_id` is never sent for v4_markets and v4_block_height (see channels)."""
    message: dict[str, object] = {"type": "subscribe", "channel": channel}
    if sub_id is not None and channel not in CHANNELS_WITHOUT_ID:
        message["id"] = sub_id
    if batched:
        message["batched"] = True
    return orjson.dumps(message)


def encode_unsubscribe(channel: str, sub_id: str | None = None) -> bytes:
    message: dict[str, object] = {"type": "unsubscribe", "channel": channel}
    if sub_id is not None and channel not in CHANNELS_WITHOUT_ID:
        message["id"] = sub_id
    return orjson.dumps(message)
