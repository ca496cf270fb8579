"""The synthetic market and the frame encoder, without sockets: determinism, book invariants, trade ids,
candle rollover, activity skew, listings, exact bytes."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson
import pytest

from exporter.protocol import channels as ch
from exporter.protocol import encode
from exporter.simulator import formats
from exporter.simulator.market import MIN_LEVELS, MarketConfig, MarketModel
from exporter.simulator.server import Simulator
from tests.fixtures.simulator import control
from tests.simulator.conftest import ProbeFactory


class Recorder:
    def __init__(self) -> None:
        self.updates: list[tuple[str, str | None, Any]] = []

    def publish(self, channel: str, key: str | None, contents: Any, extra: bytes = b"") -> None:
        self.updates.append((channel, key, orjson.loads(orjson.dumps(contents))))


def run(config: MarketConfig, ticks: int, start: float = 1_800_000_000.0) -> tuple[MarketModel, Recorder]:
    recorder = Recorder()
    model = MarketModel(config, recorder)
    for n in range(ticks):
        model.advance(start + n * model.tick_interval)
    return model, recorder


def test_same_seed_same_market_different_seed_different() -> None:
    config = MarketConfig(seed=7, markets=20, block_time=0.2, rate=3)
    _, first = run(config, 200)
    _, second = run(config, 200)
    _, other = run(MarketConfig(seed=8, markets=20, block_time=0.2, rate=3), 200)
    assert first.updates == second.updates
    assert first.updates != other.updates


def test_default_market_list_is_realistic() -> None:
    model = MarketModel(MarketConfig(), Recorder())
    tickers = model.tickers()
    assert len(tickers) == 267
    assert tickers[:3] == ["BTC-USD", "ETH-USD", "SOL-USD"]
    assert all(ch.TICKER_RE.match(t) for t in tickers)
    assert model.markets["BTC-USD"].tick_size == "1" and model.markets["ETH-USD"].tick_size == "0.1"


def test_books_stay_deep_uncrossed_and_update_one_level_at_a_time() -> None:
    model, recorder = run(MarketConfig(seed=3, markets=10, block_time=0.1, rate=4), 500)
    for market in model.markets.values():
        assert len(market.bids) >= MIN_LEVELS - 1 and len(market.asks) >= MIN_LEVELS - 1
        assert market.best_bid == max(market.bids) and market.best_ask == min(market.asks)
        assert market.best_bid < market.best_ask
    books = [c for channel, _, c in recorder.updates if channel == ch.ORDERBOOK]
    assert len(books) > 2000
    for contents in books:
        ((side, levels),) = contents.items()
        assert side in ("bids", "asks") and len(levels) == 1


def test_activity_is_skewed_to_btc_then_eth() -> None:
    _, recorder = run(MarketConfig(seed=1, markets=50, block_time=0.1, rate=3), 300)
    per_market = Counter(key for channel, key, _ in recorder.updates if channel == ch.ORDERBOOK)
    ranking = [ticker for ticker, _ in per_market.most_common(2)]
    assert ranking == ["BTC-USD", "ETH-USD"]


def test_trade_ids_encode_height_and_one_update_per_market_per_block() -> None:
    _, recorder = run(MarketConfig(seed=2, markets=5, block_time=0.1, rate=5), 300)
    height = None
    seen: set[str] = set()
    per_block: Counter[tuple[int, str]] = Counter()
    for channel, key, contents in recorder.updates:
        if channel == ch.BLOCK_HEIGHT:
            height = int(contents["blockHeight"])
        elif channel == ch.TRADES:
            for trade in contents["trades"]:
                trade_height = ch.trade_id_height(trade["id"])
                assert height is None or trade_height == height + 1, "trades come before the block height"
                assert trade["id"] not in seen
                seen.add(trade["id"])
            per_block[(ch.trade_id_height(contents["trades"][0]["id"]), key or "")] += 1
    assert seen and max(per_block.values()) == 1
    oracle: Counter[tuple[str, str]] = Counter()
    for channel, _, contents in recorder.updates:
        if channel == ch.MARKETS and "oraclePrices" in contents:
            ((ticker, price),) = contents["oraclePrices"].items()
            oracle[(price["effectiveAtHeight"], ticker)] += 1
    assert oracle and max(oracle.values()) == 1, "one oracle update per changed market per block"


def test_candles_roll_over_with_two_frames() -> None:
    start = 1_800_000_000.0 - 1.0  # one second before a minute boundary (1_800_000_000 % 60 == 0)
    _, recorder = run(MarketConfig(seed=4, markets=2, block_time=0.25, rate=5), 40, start=start)
    frames = [c for channel, key, c in recorder.updates if channel == ch.CANDLES and key == "BTC-USD/1MIN"]
    boundary = formats.iso_ms(1_800_000_000.0)
    firsts = [i for i, c in enumerate(frames) if c["startedAt"] == boundary]
    assert firsts, "a new candle was opened at the boundary"
    closing, opening = frames[firsts[0] - 1], frames[firsts[0]]
    assert closing["startedAt"] == formats.iso_ms(1_800_000_000.0 - 60)
    assert closing["orderbookMidPriceClose"] is not None
    assert opening["trades"] == 0 and opening["orderbookMidPriceClose"] is None
    assert opening["open"] == closing["close"]


def test_encoded_frames_are_exact() -> None:
    prefix = encode.data_prefix("abc")
    body = encode.data_body(encode.data_head(ch.TRADES, "BTC-USD", "2.1.0"), b'{"trades":[]}')
    assert encode.data_frame(prefix, 7, body) == (
        b'{"type":"channel_data","connection_id":"abc","message_id":7,"id":"BTC-USD","channel":"v4_trades",'
        b'"version":"2.1.0","contents":{"trades":[]}}'
    )
    markets = encode.data_body(encode.data_head(ch.MARKETS, None, "1.0.0"), b"{}")
    assert markets == b',"channel":"v4_markets","version":"1.0.0","contents":{}}'
    assert encode.error("abc", 3, "Invalid channel: x") == (
        b'{"type":"error","message":"Invalid channel: x","connection_id":"abc","message_id":3}'
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "null"), (True, "true"), (5, "5"), (5.0, "5"), (1.5, "1.5"), ("x", "x"), ([1, "a"], "1,a"),
     ({"a": 1}, "[object Object]")],
)  # fmt: skip
def test_js_str(value: object, text: str) -> None:
    assert encode.js_str(value) == text


def test_fixed_and_decimal_formats() -> None:
    assert formats.fixed(671234, 1) == "67123.4"
    assert formats.fixed(1500, 3) == "1.5"
    assert formats.fixed(5, 4) == "0.0005"
    assert formats.fixed(0, 2) == "0"
    assert formats.fixed(3, -1) == "30"
    assert formats.decimal(0.1 + 0.2, 4) == "0.3"
    assert formats.decimal(-0.00001, 2) == "0"


async def test_listing_and_delisting_at_runtime(simulator: Simulator, probes: ProbeFactory) -> None:
    probe = await probes(simulator)
    await probe.subscribe(ch.MARKETS)
    await probe.next_type("subscribed")
    answer = await control(simulator, "POST", "/control/markets", {"list": "NEW-USD", "price": 2.5})
    assert answer["listed"] == "NEW-USD"
    listing = await probe.next(lambda f: "NEW-USD" in f.get("contents", {}).get("trading", {}))
    market = listing["contents"]["trading"]["NEW-USD"]
    for key in (
        "id",
        "clobPairId",
        "ticker",
        "marketId",
        "status",
        "initialMarginFraction",
        "tickSize",
        "stepSize",
    ):
        assert key in market, key
    assert "NEW-USD" in simulator.source.rest_markets(None, 1000)["markets"]  # type: ignore[index]
    await probe.subscribe(ch.ORDERBOOK, "NEW-USD")
    assert (await probe.next_type("subscribed", channel=ch.ORDERBOOK))["id"] == "NEW-USD"
    await control(simulator, "POST", "/control/markets", {"delist": "NEW-USD"})
    delisting = await probe.next(lambda f: "NEW-USD" in f.get("contents", {}).get("trading", {}))
    assert delisting["contents"]["trading"]["NEW-USD"] == {"status": "FINAL_SETTLEMENT"}
    assert simulator.source.rest_markets("NEW-USD", 1000) is None
    await probe.subscribe(ch.TRADES, "NEW-USD")
    assert (await probe.next_type("error"))["message"] == ch.err_invalid_subscription_id(ch.TRADES, "NEW-USD")
    bad = await control(simulator, "POST", "/control/markets", {"delist": "NEW-USD"}, expect=400)
    assert "not listed" in bad["error"]
    bad = await control(simulator, "POST", "/control/markets", {"list": "BTC-USD"}, expect=400)
    assert "already listed" in bad["error"]


async def test_status_change_and_listing_hidden_from_the_websocket(
    simulator: Simulator, probes: ProbeFactory
) -> None:
    probe = await probes(simulator)
    await probe.subscribe(ch.MARKETS)
    await probe.next_type("subscribed")
    await control(simulator, "POST", "/control/markets", {"market": "SOL-USD", "status": "PAUSED"})
    change = await probe.next(lambda f: "SOL-USD" in f.get("contents", {}).get("trading", {}))
    assert change["contents"]["trading"]["SOL-USD"] == {"status": "PAUSED"}
    assert simulator.source.rest_markets("SOL-USD", 1)["markets"]["SOL-USD"]["status"] == "PAUSED"  # type: ignore[index]
    await control(simulator, "POST", "/control/markets", {"list": "LATE-USD", "ws_delay": 0.5})
    assert simulator.source.rest_markets("LATE-USD", 1) is not None, "REST lists it at once"
    await probe.subscribe(ch.TRADES, "LATE-USD")
    error = await probe.next_type("error")
    assert error["message"] == ch.err_invalid_subscription_id(ch.TRADES, "LATE-USD")
    await asyncio.sleep(0.6)
    await probe.subscribe(ch.TRADES, "LATE-USD")
    assert (await probe.next_type("subscribed", channel=ch.TRADES))["id"] == "LATE-USD"
    bad = await control(
        simulator, "POST", "/control/markets", {"market": "SOL-USD", "status": "WEIRD"}, expect=400
    )
    assert "status must be one of" in bad["error"]
    bad = await control(
        simulator, "POST", "/control/markets", {"list": "X-USD", "delist": "Y-USD"}, expect=400
    )
    assert "body must be" in bad["error"]
