"""GET /control/truth equals what a raw client rebuilt from the frames it received (books, oracle prices,
trades, block height, candles, subaccounts; batched and unbatched), so the ground truth the end-to-end
tests hold the exporter to is itself held to the wire."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from exporter.protocol import channels as ch
from exporter.simulator.server import Simulator
from tests.fixtures.simulator import SimulatorFactory, control
from tests.helpers import wait_for
from tests.simulator.conftest import ProbeFactory
from tests.simulator.probe import Frame

pytestmark = pytest.mark.timeout(60)


class Rebuilt:
    """A consumer's view rebuilt from raw frames, written independently of truth.Ledger."""

    def __init__(self) -> None:
        self.books: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
        self.oracle: dict[str, str] = {}
        self.trades: dict[str, dict[str, list[Decimal]]] = {}
        self.seen: set[str] = set()
        self.last_trade: dict[str, str] = {}
        self.height: str | None = None
        self.candles: dict[tuple[str, str], dict[str, Any]] = {}
        self.updates: dict[str, int] = {}
        self.book_levels: dict[str, int] = {}  # levels in the order book updates, per market

    def feed(self, frame: Frame) -> None:
        kind, channel, key = frame.get("type"), str(frame.get("channel")), str(frame.get("id"))
        if kind == "subscribed":
            self.snapshot(channel, key, frame["contents"])
        elif kind in ("channel_data", "channel_batch_data"):
            items = frame["contents"] if kind == "channel_batch_data" else [frame["contents"]]
            self.updates[channel] = self.updates.get(channel, 0) + len(items)
            for contents in items:
                self.update(channel, key, contents)

    def snapshot(self, channel: str, key: str, contents: dict[str, Any]) -> None:
        if channel == ch.ORDERBOOK:
            self.books[key] = (
                {lv["price"]: lv["size"] for lv in contents["bids"]},
                {lv["price"]: lv["size"] for lv in contents["asks"]},
            )
        elif channel == ch.TRADES:
            self.seen.update(row["id"] for row in contents["trades"])
        elif channel == ch.MARKETS:
            self.oracle.update({t: m["oraclePrice"] for t, m in contents["markets"].items()})
        elif channel == ch.BLOCK_HEIGHT:
            self.height = contents["height"]

    def update(self, channel: str, key: str, contents: dict[str, Any]) -> None:
        if channel == ch.ORDERBOOK:
            for side, book in zip(("bids", "asks"), self.books[key], strict=True):
                for price, size in contents.get(side, ()):
                    self.book_levels[key] = self.book_levels.get(key, 0) + 1
                    if Decimal(size):
                        book[price] = size
                    else:
                        book.pop(price, None)
        elif channel == ch.TRADES:
            for row in contents["trades"]:
                if row["id"] not in self.seen:
                    self.seen.add(row["id"])
                    tally = self.trades.setdefault(key, {}).setdefault(row["side"], [Decimal(0)] * 3)
                    price, size = Decimal(row["price"]), Decimal(row["size"])
                    tally[0] += 1
                    tally[1] += size
                    tally[2] += price * size
                    self.last_trade[key] = row["price"]
        elif channel == ch.MARKETS:
            self.oracle.update({t: r["oraclePrice"] for t, r in contents.get("oraclePrices", {}).items()})
        elif channel == ch.BLOCK_HEIGHT:
            self.height = contents["blockHeight"]
        elif channel == ch.CANDLES:
            ticker, _, resolution = key.rpartition("/")
            self.candles[(ticker, resolution)] = contents


async def until_quiet(sim: Simulator, received: Callable[[], int]) -> None:
    """Paused: wait until nothing is queued and nothing more arrived for a few batch intervals."""
    interval = 3 * sim.config.batch_interval
    previous = -1

    def settled() -> bool:
        nonlocal previous
        now = received()
        same, previous = now == previous, now
        return same and sum(s.queued_bytes for s in sim.sessions) == 0

    await wait_for(settled, 10, interval, "the simulator did not go quiet")


@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
async def test_truth_equals_what_a_client_received(
    simulator_factory: SimulatorFactory,
    probes: ProbeFactory,
    batched: bool,
) -> None:
    sim = await simulator_factory(markets=4, block_time=0.1, rate=2.0)
    tickers = sim.source.tickers()
    probe = await probes(sim)
    await probe.subscribe(ch.MARKETS, batched=batched)
    await probe.subscribe(ch.BLOCK_HEIGHT, batched=batched)
    for ticker in tickers:
        for channel in (ch.ORDERBOOK, ch.TRADES):
            await probe.subscribe(channel, ticker, batched=batched)
        await probe.subscribe(ch.CANDLES, f"{ticker}/1MIN", batched=batched)
    await wait_for(lambda: len(probe.of_type("subscribed")) == 2 + 3 * len(tickers), 10)
    await asyncio.sleep(1.5)  # a few blocks: trades, oracle prices, candles
    await control(sim, "POST", "/control/pause")
    await until_quiet(sim, lambda: len(probe.frames))
    rebuilt = Rebuilt()
    for frame in probe.frames:
        rebuilt.feed(frame)
    truth = await control(sim, "GET", "/control/truth")
    assert truth["paused"] is True
    assert truth["block_height"] == int(rebuilt.height or 0) == sim.source.height()[0]
    assert set(truth["markets"]) == set(tickers)
    for channel in ch.ALL_CHANNELS:
        assert truth["updates_delivered"][channel] == rebuilt.updates.get(channel, 0), channel
    traded = 0
    for ticker in tickers:
        market = truth["markets"][ticker]
        bids, asks = rebuilt.books[ticker]
        assert market["book"]["delivered"] is True
        assert market["orderbook_updates"] == rebuilt.book_levels.get(ticker, 0), ticker
        assert market["book"]["bids"] == sorted(map(list, bids.items()), key=lambda lv: -Decimal(lv[0]))
        assert market["book"]["asks"] == sorted(map(list, asks.items()), key=lambda lv: Decimal(lv[0]))
        assert market["best_bid"] == max(bids, key=Decimal) and market["best_ask"] == min(asks, key=Decimal)
        assert market["oracle_price"] == rebuilt.oracle[ticker]
        for side in ("BUY", "SELL"):
            count, volume, notional = rebuilt.trades.get(ticker, {}).get(side, [Decimal(0)] * 3)
            got = market["trades"][side]
            assert (got["count"], Decimal(got["volume"]), Decimal(got["notional"])) == (
                count,
                volume,
                notional,
            )
            traded += int(count)
        last = market["last_trade"]
        assert (last and last["price"]) == rebuilt.last_trade.get(ticker), ticker
        assert market["candles"].get("1MIN") == rebuilt.candles.get((ticker, "1MIN")), ticker
    assert traded > 0 and rebuilt.updates[ch.ORDERBOOK] > 50


async def test_truth_filters_markets_and_refuses_unknown_ones(simulator: Simulator) -> None:
    one = await control(simulator, "GET", "/control/truth?market=BTC-USD&market=ETH-USD")
    assert sorted(one["markets"]) == ["BTC-USD", "ETH-USD"]
    book = one["markets"]["BTC-USD"]["book"]
    assert book["delivered"] is False and len(book["bids"]) == ch.REST_ORDERBOOK_MAX_LEVELS
    error = await control(simulator, "GET", "/control/truth?market=NOPE-USD", expect=400)
    assert "NOPE-USD" in error["error"]
