"""The seam between the server and what it serves.

The server (WebSocket fan-out, REST, control API, faults) knows nothing of where events come from: it calls
an `EventSource` every tick while not paused, and the source calls `Publisher.publish` for each update.
`market.MarketModel` is the synthetic source; a replay source (record/replay, `capture.py`) implements the
same protocol from a capture file. Snapshots and REST answers come from the same source, so they always
agree with the stream.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any, Protocol

from exporter.protocol import channels as ch


class Publisher(Protocol):
    def publish(self, channel: str, key: str | None, contents: Any, extra: bytes = b"") -> None:
        """One update for everyone subscribed to (channel, key). `key` is None for v4_markets and
        "v4_block_height" for block height. `extra` is appended after `contents` (for parent subaccounts:
        `,"subaccountNumber":N`)."""


class EventSource(Protocol):
    #: Seconds between two `advance` calls (the server keeps an absolute schedule).
    tick_interval: float

    def advance(self, exchange_now: float) -> None:
        """Produce the events of one tick. `exchange_now` is the exchange's clock (wall clock minus any
        simulated lag): timestamps in frames come from it."""

    # What subscribers may ask for.
    def valid(self, channel: str, key: str | None) -> bool:
        """Whether a subscribe for (channel, key) names something that exists (a listed ticker, ...)."""

    def snapshot(self, channel: str, key: str | None) -> Any:
        """`contents` of the `subscribed` frame (the REST shape, as socks fetches it from comlink)."""

    # REST (comlink) views. None means "unknown ticker" (404).
    def rest_markets(self, ticker: str | None, limit: int) -> Mapping[str, Any] | None: ...

    def rest_orderbook(self, ticker: str) -> Mapping[str, Any] | None: ...

    def rest_trades(self, ticker: str) -> list[dict[str, Any]] | None:
        """Trades newest first (REST row shape, with createdAtHeight)."""

    def rest_candles(self, ticker: str, resolution: str) -> list[dict[str, Any]] | None:
        """Candles newest first."""

    def height(self) -> tuple[int, float]:
        """Latest block height and its exchange time (epoch seconds)."""

    def tickers(self) -> list[str]: ...

    # Control API.
    def list_market(self, ticker: str, price: float | None) -> dict[str, Any]: ...

    def delist_market(self, ticker: str) -> None: ...

    def start_cross(self, ticker: str, keep: bool = False) -> None:
        """Cross `ticker`'s book in the stream (snapshots and REST stay uncrossed); with `keep`, cross it
        again whenever the market's own events uncross it, until `end_cross`."""

    def recross(self, ticker: str) -> None:
        """Publish what crosses `ticker`'s book again for a subscriber that just got an (uncrossed)
        snapshot, while a cross is in force; nothing otherwise."""

    def end_cross(self, ticker: str) -> None: ...


def valid_market_subscription(channel: str, key: str | None, tickers: Container[str]) -> bool | None:
    """`EventSource.valid` for every channel but the account ones (None: each source has its own rule).

    v4_markets and v4_block_height always; orderbook and trades for a listed ticker; candles for a listed
    ticker at a known resolution; anything else never.
    """
    if channel in (ch.MARKETS, ch.BLOCK_HEIGHT):
        return True
    if channel in (ch.SUBACCOUNTS, ch.PARENT_SUBACCOUNTS):
        return None
    if key is None:
        return False
    if channel in (ch.ORDERBOOK, ch.TRADES):
        return key in tickers
    if channel == ch.CANDLES:
        ticker, _, resolution = key.rpartition("/")
        return ticker in tickers and resolution in ch.CANDLE_RESOLUTION_SECONDS
    return False
