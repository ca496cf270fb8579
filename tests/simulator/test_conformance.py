"""Protocol conformance over loopback: frame shapes per channel, message-id rules, error texts, limits,
heartbeat, batching and shutdown, exactly as the protocol reference describes the indexer."""

from __future__ import annotations

import asyncio
import itertools
import re
import time

import orjson
import pytest

from exporter.protocol import channels as ch
from exporter.simulator.market import MarketModel
from exporter.simulator.server import Simulator
from tests.fixtures.simulator import SimulatorFactory
from tests.simulator.conftest import ProbeFactory

pytestmark = pytest.mark.timeout(30)

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
DECIMAL = re.compile(r"^-?(0|[1-9]\d*)(\.\d*[1-9])?$")
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SUBSCRIBED_KEYS = ["type", "connection_id", "message_id", "channel", "id", "contents"]
DATA_KEYS = ["type", "connection_id", "message_id", "id", "channel", "version", "contents"]


def is_data(channel: str, sub_id: str | None = None):
    return lambda f: f["type"] == "channel_data" and f["channel"] == channel and f.get("id") == sub_id


def is_subscribed(channel: str):
    return lambda f: f["type"] == "subscribed" and f["channel"] == channel


@pytest.fixture
async def busy(simulator_factory: SimulatorFactory) -> Simulator:
    """Fast blocks and plenty of activity on few markets, so every channel produces within a second."""
    return await simulator_factory(markets=3, block_time=0.05, rate=4, trading_interval=0.2, subaccounts=2)


async def test_connected_frame_is_exact(simulator: Simulator, probes: ProbeFactory) -> None:
    probe = await probes(simulator, skip_connected=False)
    frame = await probe.next()
    assert list(frame) == ["type", "connection_id", "message_id"]
    assert frame["type"] == "connected" and frame["message_id"] == 0
    assert UUID4.match(frame["connection_id"])
    assert probe.raw[0] == f'{{"type":"connected","connection_id":"{frame["connection_id"]}","message_id":0}}'


async def test_orderbook_snapshot_objects_and_single_level_updates(
    busy: Simulator, probes: ProbeFactory
) -> None:
    probe = await probes(busy)
    await probe.subscribe(ch.ORDERBOOK, "BTC-USD")
    sub = await probe.next(is_subscribed(ch.ORDERBOOK))
    assert list(sub) == SUBSCRIBED_KEYS and "version" not in sub
    bids, asks = sub["contents"]["bids"], sub["contents"]["asks"]
    assert 100 == len(bids) == len(asks), "snapshot is the REST top 100 per side of a 100+ level book"
    assert all(list(level) == ["price", "size"] for level in bids + asks)
    bid_prices = [float(b["price"]) for b in bids]
    ask_prices = [float(a["price"]) for a in asks]
    assert bid_prices == sorted(bid_prices, reverse=True) and ask_prices == sorted(ask_prices)
    assert bid_prices[0] < ask_prices[0], "snapshots are uncrossed"
    for _ in range(20):
        update = await probe.next(is_data(ch.ORDERBOOK, "BTC-USD"))
        assert list(update) == DATA_KEYS and update["version"] == "1.0.0"
        (side, levels), *rest = update["contents"].items()
        assert not rest and side in ("bids", "asks") and len(levels) == 1, "one level per update"
        price, size = levels[0]
        assert DECIMAL.match(price) and DECIMAL.match(size), (price, size)


async def test_trades_snapshot_rows_differ_from_update_rows(busy: Simulator, probes: ProbeFactory) -> None:
    await asyncio.sleep(0.3)  # let a few blocks of trades build history
    probe = await probes(busy)
    await probe.subscribe(ch.TRADES, "BTC-USD")
    sub = await probe.next(is_subscribed(ch.TRADES))
    rows = sub["contents"]["trades"]
    assert rows, "history exists after a few blocks"
    assert all(
        list(r) == ["id", "side", "size", "price", "type", "createdAt", "createdAtHeight"] for r in rows
    )
    heights = [int(r["createdAtHeight"]) for r in rows]
    assert heights == sorted(heights, reverse=True), "newest first"
    update = await probe.next(is_data(ch.TRADES, "BTC-USD"))
    assert update["version"] == "2.1.0"
    for trade in update["contents"]["trades"]:
        assert list(trade) == ["id", "size", "price", "side", "createdAt", "type"]
        assert re.fullmatch(r"[0-9a-f]{24}", trade["id"])
        assert ch.trade_id_height(trade["id"]) > heights[0], "updates during the fetch are not delivered"
        assert trade["side"] in ch.TRADE_SIDES and trade["type"] in ch.TRADE_TYPES
        assert ISO_MS.match(trade["createdAt"]) and DECIMAL.match(trade["size"])


async def test_markets_channel_has_no_id_and_one_ticker_per_oracle_update(
    busy: Simulator, probes: ProbeFactory
) -> None:
    probe = await probes(busy)
    await probe.subscribe(ch.MARKETS)
    sub = await probe.next(is_subscribed(ch.MARKETS))
    assert list(sub) == ["type", "connection_id", "message_id", "channel", "contents"]
    markets = sub["contents"]["markets"]
    assert list(markets) == ["BTC-USD", "ETH-USD", "SOL-USD"]
    btc = markets["BTC-USD"]
    for key in (
        "trades24H",
        "atomicResolution",
        "quantumConversionExponent",
        "stepBaseQuantums",
        "subticksPerTick",
    ):
        assert isinstance(btc[key], int), key
    for key in (
        "clobPairId",
        "oraclePrice",
        "volume24H",
        "nextFundingRate",
        "openInterest",
        "tickSize",
        "stepSize",
    ):
        assert isinstance(btc[key], str), key
    oracle = await probe.next(lambda f: f["type"] == "channel_data" and "oraclePrices" in f["contents"])
    assert list(oracle) == ["type", "connection_id", "message_id", "channel", "version", "contents"]
    (ticker, price), *rest = oracle["contents"]["oraclePrices"].items()
    assert not rest and ticker in markets
    assert list(price) == ["oraclePrice", "effectiveAt", "effectiveAtHeight", "marketId"]
    assert isinstance(price["marketId"], int) and isinstance(price["effectiveAtHeight"], str)
    trading = await probe.next(lambda f: f["type"] == "channel_data" and "trading" in f["contents"])
    diff = next(iter(trading["contents"]["trading"].values()))
    assert isinstance(diff["trades24H"], int) and isinstance(diff["volume24H"], str)


async def test_candles_full_objects_for_every_resolution(busy: Simulator, probes: ProbeFactory) -> None:
    probe = await probes(busy)
    for resolution in ch.CANDLE_RESOLUTIONS:
        await probe.subscribe(ch.CANDLES, f"BTC-USD/{resolution}")
    for resolution in ch.CANDLE_RESOLUTIONS:
        candle_id = f"BTC-USD/{resolution}"
        update = await probe.next(is_data(ch.CANDLES, candle_id))
        candle = update["contents"]
        assert list(candle) == [
            "startedAt", "ticker", "resolution", "low", "high", "open", "close", "baseTokenVolume",
            "usdVolume", "trades", "startingOpenInterest", "orderbookMidPriceOpen", "orderbookMidPriceClose",
        ]  # fmt: skip
        assert candle["resolution"] == resolution and isinstance(candle["trades"], int)
        started = time.mktime(time.strptime(candle["startedAt"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert started % ch.CANDLE_RESOLUTION_SECONDS[resolution] == 0, "candles start on boundaries"


async def test_block_height_snapshot_and_update_keys_differ(busy: Simulator, probes: ProbeFactory) -> None:
    probe = await probes(busy)
    await probe.subscribe(ch.BLOCK_HEIGHT)
    sub = await probe.next(is_subscribed(ch.BLOCK_HEIGHT))
    assert sub["id"] == "v4_block_height" and list(sub["contents"]) == ["height", "time"]
    first = await probe.next(is_data(ch.BLOCK_HEIGHT, "v4_block_height"))
    second = await probe.next(is_data(ch.BLOCK_HEIGHT, "v4_block_height"))
    assert list(first["contents"]) == ["blockHeight", "time"]
    assert isinstance(first["contents"]["blockHeight"], str)
    assert int(second["contents"]["blockHeight"]) == int(first["contents"]["blockHeight"]) + 1
    assert int(first["contents"]["blockHeight"]) > int(sub["contents"]["height"])


async def test_subaccounts_snapshot_updates_and_unknown(busy: Simulator, probes: ProbeFactory) -> None:
    assert isinstance(busy.source, MarketModel)
    sub_ids = [f"{s.address}/{s.number}" for s in busy.source.subaccounts]
    probe = await probes(busy)
    for sub_id in sub_ids:
        await probe.subscribe(ch.SUBACCOUNTS, sub_id)
    unknown = "dydx1" + "q" * 38 + "/0"
    await probe.subscribe(ch.SUBACCOUNTS, unknown)
    await probe.subscribe(ch.PARENT_SUBACCOUNTS, sub_ids[0])
    snap = await probe.next(lambda f: f["type"] == "subscribed" and f["id"] == sub_ids[0])
    assert list(snap["contents"]) == ["subaccount", "orders", "blockHeight"]
    assert snap["contents"]["subaccount"]["subaccountNumber"] == 0
    empty = await probe.next_type("subscribed", id=unknown)
    assert empty["contents"] == {}
    update = await probe.next(lambda f: f["type"] == "channel_data" and f["channel"] == ch.SUBACCOUNTS, 10)
    assert update["version"] == "3.0.0" and "blockHeight" in update["contents"]
    parent = await probe.next(
        lambda f: f["type"] == "channel_data" and f["channel"] == ch.PARENT_SUBACCOUNTS, 10
    )
    assert list(parent)[-1] == "subaccountNumber" and parent["subaccountNumber"] == 0


async def test_message_ids_per_connection(simulator_factory: SimulatorFactory, probes: ProbeFactory) -> None:
    sim = await simulator_factory(markets=3, block_time=0.05, rate=2, snapshot_delay=0.3)
    probe = await probes(sim)
    await probe.subscribe(ch.BLOCK_HEIGHT)
    await probe.next(is_subscribed(ch.BLOCK_HEIGHT))
    await probe.subscribe(ch.ORDERBOOK, "ETH-USD")
    sub = await probe.next(is_subscribed(ch.ORDERBOOK))
    position = probe.frames.index(sub)
    earlier = [f["message_id"] for f in probe.frames[:position] if f["type"] == "channel_data"]
    assert max(earlier) > sub["message_id"], "subscribed arrives after data frames with higher ids"
    # Validation errors reuse the current id; a JSON ping changes nothing.
    await probe.send({"type": "subscribe", "channel": "v4_nope"})
    await probe.send({"type": "ping"})
    await probe.send({"type": "subscribe", "channel": "v4_trades"})
    await probe.next_type("error", message="Invalid id: undefined")
    await probe.send({"type": "unsubscribe", "channel": ch.ORDERBOOK, "id": "ETH-USD"})
    await probe.next_type("unsubscribed")
    await probe.next(is_data(ch.BLOCK_HEIGHT, "v4_block_height"))
    ids = [f["message_id"] for f in probe.frames]
    assert set(ids) == set(range(max(ids) + 1)), "every increment produced exactly one frame"
    errors = [f for f in probe.frames if f["type"] == "error"]
    others = {f["message_id"] for f in probe.frames if f["type"] != "error"}
    assert all(e["message_id"] in others for e in errors), "a validation error reuses the current id"
    assert len(ids) - len(set(ids)) == len(errors)
    data_ids = [f["message_id"] for f in probe.frames if f["type"] == "channel_data"]
    assert data_ids == sorted(data_ids)


async def test_error_texts_for_bad_subscribes(simulator: Simulator, probes: ProbeFactory) -> None:
    probe = await probes(simulator)
    cases = [
        ({"type": "subscribe"}, ch.ERR_CHANNEL_REQUIRED),
        ({"type": "subscribe", "channel": "v4_nope"}, "Invalid channel: v4_nope"),
        ({"type": "unsubscribe", "channel": 7}, "Invalid channel: 7"),
        ({"type": "subscribe", "channel": ch.TRADES}, "Invalid id: undefined"),
        ({"type": "subscribe", "channel": ch.TRADES, "id": 5}, "Invalid id: 5"),
        ({"type": "subscribe", "channel": ch.TRADES, "id": "NOPE-USD"},
         ch.err_invalid_subscription_id(ch.TRADES, "NOPE-USD")),
        (
            {"type": "subscribe", "channel": ch.CANDLES, "id": "ETH-USD/CandlesResolution.FIVE_MINUTES"},
            ch.err_invalid_subscription_id(ch.CANDLES, "ETH-USD/CandlesResolution.FIVE_MINUTES"),
        ),
        ({"type": "subscribe", "channel": ch.SUBACCOUNTS, "id": "dydx1abc/0"},
         ch.err_invalid_subscription_id(ch.SUBACCOUNTS, "dydx1abc/0")),
    ]  # fmt: skip
    for message, text in cases:
        await probe.send(message)
        error = await probe.next_type("error")
        assert error["message"] == text
        assert list(error) == ["type", "message", "connection_id", "message_id"]
    await probe.send("null")
    assert (await probe.next_type("error"))["message"] == ch.ERR_INTERNAL
    await probe.subscribe(ch.TRADES, "BTC-USD")
    await probe.next(is_subscribed(ch.TRADES))
    await asyncio.sleep(1.0)  # a fresh subscribe-rate window for the same (channel, id)
    await probe.subscribe(ch.TRADES, "BTC-USD")
    dup = await probe.next_type("error")
    assert dup["message"] == ch.err_already_subscribed(ch.TRADES, "BTC-USD")
    assert (dup["channel"], dup["id"]) == (ch.TRADES, "BTC-USD")
    assert not probe.closed, "bad channel and bad id errors are not rate limited"


@pytest.mark.parametrize(
    ("messages", "texts"),
    [
        (["not json", "{}", '{"type":"hello"}'], [ch.ERR_COULD_NOT_PARSE, ch.ERR_TYPE_REQUIRED]),
        (["[1", "[1", "[1"], [ch.ERR_COULD_NOT_PARSE, ch.ERR_COULD_NOT_PARSE]),
    ],
)
async def test_invalid_message_rate_limit_closes_1008(
    simulator: Simulator, probes: ProbeFactory, messages: list[str], texts: list[str]
) -> None:
    probe = await probes(simulator)
    for message in messages:
        await probe.send(message)
    assert await probe.wait_closed() == ch.CLOSE_RATE_LIMITED
    assert probe.close_reason == ch.RATE_LIMITED_REASON
    assert [f["message"] for f in probe.of_type("error")] == [*texts, ch.ERR_TOO_MANY_INVALID]


async def test_invalid_type_text(simulator: Simulator, probes: ProbeFactory) -> None:
    probe = await probes(simulator)
    await probe.send({"type": "hello"})
    assert (await probe.next_type("error"))["message"] == "Invalid message type: hello"


async def test_subscribe_rate_limit_closes_1008(simulator: Simulator, probes: ProbeFactory) -> None:
    probe = await probes(simulator)
    await probe.subscribe(ch.ORDERBOOK, "ETH-USD")
    await probe.subscribe(ch.TRADES, "ETH-USD")  # other (channel, id) pairs have their own budget
    for _ in range(2):
        await probe.subscribe(ch.ORDERBOOK, "BTC-USD")
    await probe.subscribe(ch.ORDERBOOK, "BTC-USD")
    assert await probe.wait_closed() == ch.CLOSE_RATE_LIMITED
    assert probe.close_reason == ch.RATE_LIMITED_REASON
    last_error = probe.of_type("error")[-1]
    assert last_error["message"] == ch.err_too_many_subscribes(ch.ORDERBOOK, "BTC-USD")
    assert "Please  reconnect" in last_error["message"]


async def test_subscription_caps(simulator_factory: SimulatorFactory, probes: ProbeFactory) -> None:
    sim = await simulator_factory(markets=33, block_time=1.0, rate=0.1)
    probe = await probes(sim)
    for ticker in sim.source.tickers():
        await probe.subscribe(ch.ORDERBOOK, ticker)
    error = await probe.next_type("error")
    assert error["message"] == "Per-connection subscription limit reached for v4_orderbook (limit=32)."
    await wait_subscribed(probe, ch.ORDERBOOK, 32)
    await probe.subscribe(ch.BLOCK_HEIGHT)
    await probe.next(is_subscribed(ch.BLOCK_HEIGHT))
    await probe.subscribe(ch.BLOCK_HEIGHT, "another")
    error = await probe.next_type("error")
    assert error["message"] == "Per-connection subscription limit reached for v4_block_height (limit=1)."
    assert not probe.closed, "going over a cap keeps the connection open"


async def wait_subscribed(probe, channel: str, count: int) -> None:
    from tests.helpers import wait_for

    await wait_for(lambda: len([f for f in probe.of_type("subscribed") if f["channel"] == channel]) == count)


async def test_unsubscribe_always_answered_and_stops_updates(busy: Simulator, probes: ProbeFactory) -> None:
    probe = await probes(busy)
    await probe.send({"type": "unsubscribe", "channel": ch.MARKETS})
    reply = await probe.next_type("unsubscribed")
    assert list(reply) == ["type", "connection_id", "message_id", "channel"], "no id for markets"
    await probe.send({"type": "unsubscribe", "channel": ch.TRADES, "id": "BTC-USD"})
    assert (await probe.next_type("unsubscribed"))["id"] == "BTC-USD", "answered even when not subscribed"
    await probe.subscribe(ch.BLOCK_HEIGHT)
    await probe.next(is_data(ch.BLOCK_HEIGHT, "v4_block_height"))
    await probe.send({"type": "unsubscribe", "channel": ch.BLOCK_HEIGHT})
    reply = await probe.next_type("unsubscribed")
    assert "id" not in reply, "no id when the client sent none"
    await asyncio.sleep(0.3)
    after = probe.frames[probe.frames.index(reply) + 1 :]
    assert not [f for f in after if f["type"] == "channel_data"]


async def test_batched_flushes_every_250ms_as_arrays(busy: Simulator, probes: ProbeFactory) -> None:
    probe = await probes(busy)
    await probe.subscribe(ch.ORDERBOOK, "BTC-USD", batched=True)
    await probe.next(is_subscribed(ch.ORDERBOOK))
    stamps = []
    frames = []
    for _ in range(4):
        frame = await probe.next(lambda f: f["type"] == "channel_batch_data")
        stamps.append(time.monotonic())
        frames.append(frame)
    for frame in frames:
        assert list(frame) == DATA_KEYS and frame["version"] == "1.0.0"
        assert isinstance(frame["contents"], list) and len(frame["contents"]) >= 1
        assert all(len(c) == 1 and len(next(iter(c.values()))) == 1 for c in frame["contents"])
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(0.15 < gap < 0.45 for gap in gaps), gaps
    assert not probe.of_type("channel_data"), "a batched subscription never gets channel_data"


async def test_server_pings_and_pong_timeout_closes_1011(
    simulator_factory: SimulatorFactory, probes: ProbeFactory
) -> None:
    sim = await simulator_factory(ping_interval=0.2, pong_timeout=0.3)
    polite = await probes(sim)
    silent = await probes(sim, answer_pings=False)
    assert await silent.wait_closed(timeout=3) == ch.CLOSE_HEARTBEAT_TIMEOUT
    assert silent.close_reason == ch.HEARTBEAT_TIMEOUT_REASON
    assert polite.pings >= 2 and not polite.closed, "a client that answers pings stays connected"


async def test_shutdown_closes_clients_with_1012(
    simulator_factory: SimulatorFactory, probes: ProbeFactory
) -> None:
    sim = await simulator_factory()
    probe = await probes(sim)
    await sim.stop()
    assert await probe.wait_closed() == ch.CLOSE_SERVICE_RESTARTING
    assert probe.close_reason == ch.SERVICE_RESTARTING_REASON


async def test_binary_frames_are_accepted(simulator: Simulator, probes: ProbeFactory) -> None:
    probe = await probes(simulator)
    await probe.ws.send_bytes(orjson.dumps({"type": "subscribe", "channel": ch.BLOCK_HEIGHT}))
    assert (await probe.next(is_subscribed(ch.BLOCK_HEIGHT)))["id"] == ch.BLOCK_HEIGHT_ID
