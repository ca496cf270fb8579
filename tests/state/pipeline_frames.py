"""Frames in the exact shapes of the protocol reference (§3), for the
pipeline's unit tests (and the capture tests' hand-made captures), and a small harness that feeds them to a
real Router + Collector + MarketUniverse.

Written out by hand, not with exporter.protocol.encode: the tests check the code against the reference,
so the expected shapes must not come from the code under test."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from exporter.feed.sink import Control
from exporter.metrics.collector import Collector
from exporter.protocol import channels as ch
from exporter.state.router import Router
from exporter.state.universe import MarketsChanged, MarketUniverse
from tests.helpers import Samples, parse_metrics

CONN = "9a1c5e2e-1d7b-4bd6-9f0e-3d5c4b1e8a11"
ALL = (ch.MARKETS, ch.TRADES, ch.ORDERBOOK, ch.CANDLES, ch.BLOCK_HEIGHT)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def connected(message_id: int = 0) -> dict[str, Any]:
    return {"type": "connected", "connection_id": CONN, "message_id": message_id}


def subscribed(
    channel: str, sub_id: str | None, message_id: int, contents: Any, *, connection_id: str = CONN
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "subscribed",
        "connection_id": connection_id,
        "message_id": message_id,
        "channel": channel,
    }
    if sub_id is not None:
        frame["id"] = sub_id
    frame["contents"] = contents
    return frame


def data(
    channel: str,
    sub_id: str | None,
    message_id: int,
    contents: Any,
    *,
    batched: bool = False,
    connection_id: str = CONN,
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "channel_batch_data" if batched else "channel_data",
        "connection_id": connection_id,
        "message_id": message_id,
    }
    if sub_id is not None:
        frame["id"] = sub_id
    frame.update({"channel": channel, "version": ch.VERSIONS[channel], "contents": contents})
    return frame


def book_snapshot(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "bids": [{"price": p, "size": s} for p, s in bids],
        "asks": [{"price": p, "size": s} for p, s in asks],
    }


def trade(
    trade_id: str, side: str = "BUY", size: str = "0.015", price: str = "67013", at: float | None = None
):
    return {
        "id": trade_id,
        "size": size,
        "price": price,
        "side": side,
        "createdAt": iso(time.time() if at is None else at),
        "type": "LIMIT",
    }


def market_object(ticker: str, status: str = "ACTIVE", oracle: str = "100", clob: int = 0) -> dict[str, Any]:
    return {
        "clobPairId": str(clob),
        "ticker": ticker,
        "status": status,
        "oraclePrice": oracle,
        "priceChange24H": "0",
        "volume24H": "0",
        "trades24H": 0,
        "nextFundingRate": "0",
        "initialMarginFraction": "0.05",
        "maintenanceMarginFraction": "0.03",
        "openInterest": "0",
        "atomicResolution": -10,
        "quantumConversionExponent": -9,
        "tickSize": "1",
        "stepSize": "0.0001",
        "stepBaseQuantums": 1000000,
        "subticksPerTick": 100000,
        "marketType": "CROSS",
    }


class Pipeline:
    """A real Router + Collector + MarketUniverse, fed frames as the feed would (serialized JSON,
    wall-clock receipt). `changes` are the universe's announcements, in order."""

    def __init__(
        self,
        channels: tuple[str, ...] = ALL,
        clock: Callable[[], float] = time.time,
        wants_market: Callable[[str], bool] | None = None,
        **router_args: Any,
    ) -> None:
        self.collector = Collector(version="1.2.3-test", channels=channels, clock=clock)
        self.universe = MarketUniverse(wants_market)
        self.router = Router(self.collector, self.universe, clock=clock, **router_args)
        self.changes: list[MarketsChanged] = []
        self.universe.subscribe(self.changes.append)
        self.link = "conn-0"
        self.next_id = 1

    def feed(self, frame: Any, received_at: float | None = None, link: str | None = None) -> Control | None:
        raw = frame if isinstance(frame, str | bytes) else orjson.dumps(frame)
        return self.router.handle(link or self.link, raw, time.time() if received_at is None else received_at)

    def mid(self) -> int:
        value = self.next_id
        self.next_id += 1
        return value

    def connect(self, link: str | None = None) -> Control | None:
        self.router.link_opened(link or self.link)
        self.next_id = 1
        return self.feed(connected(), link=link)

    def samples(self) -> Samples:
        return parse_metrics(self.collector.render_text())

    def invalid(self, channel: str | None = None, reason: str | None = None) -> float:
        total = 0.0
        for (name, labels), value in self.samples().items():
            lbl = dict(labels)
            if name != "dydx_messages_invalid_total":
                continue
            if channel is not None and lbl["channel"] != channel:
                continue
            if reason is not None and lbl["reason"] != reason:
                continue
            total += value
        return total
