"""Record from one simulator, replay the file through a second, and check what real WebSocket and REST
clients of the second one get: the recorded contents per (channel, id), in order, under fresh connection
ids and valid per-connection message ids, and REST views that end where the first simulator ended."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter.protocol import channels as ch
from exporter.simulator.replay import ReplaySource, replay_source
from exporter.simulator.server import Simulator
from tests.capture.expect import SHIPPED, first_snapshots, frames, recorded_updates
from tests.data.make_capture import record_simulator
from tests.fixtures.exporter import ExporterFactory
from tests.fixtures.simulator import SimulatorFactory
from tests.helpers import Samples, metric_sum, metric_value, scrape, wait_for
from tests.simulator.probe import Probe

MARKETS = ("BTC-USD", "ETH-USD")
ReplayFactory = Callable[..., Awaitable[Simulator]]


@pytest.fixture
def replay_factory(simulator_factory: SimulatorFactory) -> ReplayFactory:
    """A simulator serving a capture, started paused (resume to start the replay); stopped at teardown."""

    async def make(path: Path, speed: float = 0.0, retime: bool = False, **overrides: Any) -> Simulator:
        source = replay_source(path, speed=speed, retime=retime)
        return await simulator_factory(source, **{"paused": True, **overrides})

    return make


def subscriptions() -> list[tuple[str, str | None]]:
    keys: list[tuple[str, str | None]] = [(ch.MARKETS, None), (ch.BLOCK_HEIGHT, None)]
    for ticker in MARKETS:
        keys += [(ch.ORDERBOOK, ticker), (ch.TRADES, ticker), (ch.CANDLES, ch.candle_id(ticker, "1MIN"))]
    return keys


def received(probe: Probe) -> dict[tuple[str, str | None], list[Any]]:
    out: dict[tuple[str, str | None], list[Any]] = {}
    for frame in probe.frames:
        if frame["type"] == ch.T_CHANNEL_DATA:
            out.setdefault((frame["channel"], frame.get("id")), []).append(frame["contents"])
        elif frame["type"] == ch.T_CHANNEL_BATCH_DATA:
            out.setdefault((frame["channel"], frame.get("id")), []).extend(frame["contents"])
    return out


@pytest.mark.timeout(90)
async def test_replay_serves_recorded_contents_with_fresh_ids(
    simulator_factory: SimulatorFactory, replay_factory: ReplayFactory, tmp_path: Path
) -> None:
    live = await simulator_factory(markets=MARKETS, block_time=0.1, paused=True, trading_interval=0.5)
    recorded = await record_simulator(live, tmp_path / "cap.jsonl.gz", seconds=1.5, markets=MARKETS)
    expected = recorded_updates(recorded.path)
    recorded_connections = {f["connection_id"] for f in frames(recorded.path)}
    snapshots = first_snapshots(recorded.path)

    replay = await replay_factory(recorded.path, speed=0)
    probe = await Probe.open(replay.ws_url)
    batched = await Probe.open(replay.ws_url)
    try:
        connected = await probe.next_type(ch.T_CONNECTED)
        assert connected["message_id"] == 0 and connected["connection_id"] not in recorded_connections
        for channel, key in subscriptions():
            await probe.subscribe(channel, key)
        await batched.subscribe(ch.ORDERBOOK, "BTC-USD", batched=True)
        await wait_for(lambda: len(probe.of_type(ch.T_SUBSCRIBED)) == len(subscriptions()), timeout=10)
        await wait_for(lambda: batched.of_type(ch.T_SUBSCRIBED), timeout=10)
        # Before any replayed event, each snapshot is the one recorded.
        for frame in probe.of_type(ch.T_SUBSCRIBED):
            recorded_key = (frame["channel"], frame.get("id"))
            assert frame["contents"] == snapshots[recorded_key], recorded_key

        replay.resume()
        total = sum(len(v) for v in expected.values())
        await wait_for(lambda: sum(len(v) for v in received(probe).values()) >= total, timeout=30)
        await wait_for(
            lambda: (
                len(received(batched).get((ch.ORDERBOOK, "BTC-USD"), []))
                >= len(expected[(ch.ORDERBOOK, "BTC-USD")])
            ),
            timeout=10,
        )
        assert received(probe) == expected
        assert received(batched) == {(ch.ORDERBOOK, "BTC-USD"): expected[(ch.ORDERBOOK, "BTC-USD")]}
        assert batched.of_type(ch.T_CHANNEL_BATCH_DATA) and not batched.of_type(ch.T_CHANNEL_DATA)

        # Message ids are this connection's own: 0..N once each, data frames strictly increasing.
        ids = [f["message_id"] for f in probe.frames]
        assert sorted(ids) == list(range(len(ids)))
        data_ids = [f["message_id"] for f in probe.frames if f["type"] == ch.T_CHANNEL_DATA]
        assert data_ids == sorted(data_ids)
        assert {f["connection_id"] for f in probe.frames} == {connected["connection_id"]}
    finally:
        await probe.close()
        await batched.close()

    # REST answers from the same state, which ended where the recorded simulator ended.
    truth = recorded.truth
    async with aiohttp.ClientSession(base_url=replay.base_url) as http:
        for ticker in MARKETS:
            async with http.get(f"/v4/orderbooks/perpetualMarket/{ticker}") as resp:
                book = await resp.json()
            real = truth["orderbooks"][ticker]
            assert book["bids"][:20] == real["bids"][:20] and book["asks"][:20] == real["asks"][:20]
            async with http.get(f"/v4/trades/perpetualMarket/{ticker}") as resp:
                assert (await resp.json())["trades"] == truth["trades"][ticker]
        async with http.get("/v4/height") as resp:
            assert (await resp.json())["height"] == str(truth["height"])
        async with http.get("/v4/perpetualMarkets") as resp:
            markets = (await resp.json())["markets"]
        assert list(markets) == list(MARKETS)
        assert {t: m["oraclePrice"] for t, m in markets.items()} == {t: truth["oracle"][t] for t in MARKETS}
        async with http.get("/v4/orderbooks/perpetualMarket/DOGE-USD") as resp:
            assert resp.status == 404


@pytest.mark.timeout(60)
async def test_a_reconnect_while_recording_is_resynchronised_on_replay(
    simulator_factory: SimulatorFactory, replay_factory: ReplayFactory, tmp_path: Path
) -> None:
    """The recorder reconnects after a 1012 and re-subscribes; its fresh snapshots are recorded, and the
    replay takes them as the truth from that point on, so it still ends where the live simulator ended
    (although the updates lost during the reconnect are not in the file)."""
    live = await simulator_factory(markets=MARKETS, block_time=0.1, paused=True)
    recorded = await record_simulator(
        live, tmp_path / "reconnect.jsonl.gz", seconds=1.0, markets=MARKETS, disconnect_midway=True
    )
    recorded_frames = frames(recorded.path)
    assert len({f["connection_id"] for f in recorded_frames}) == 2
    subscribed = [(f["channel"], f.get("id")) for f in recorded_frames if f["type"] == ch.T_SUBSCRIBED]
    assert len(subscribed) == 2 * len(set(subscribed)) == 2 * len(subscriptions())

    replay = await replay_factory(recorded.path, speed=0)
    replay.resume()
    source = replay.source
    assert isinstance(source, ReplaySource)
    await wait_for(lambda: source.finished, timeout=20, message="replay finished")
    truth = recorded.truth
    assert source.height()[0] == truth["height"]
    for ticker in MARKETS:
        book, real = source.rest_orderbook(ticker), truth["orderbooks"][ticker]
        assert book is not None
        assert book["bids"][:20] == real["bids"][:20] and book["asks"][:20] == real["asks"][:20]
        assert source.rest_trades(ticker) == truth["trades"][ticker]


@pytest.mark.timeout(60)
async def test_the_exporter_on_a_retimed_replay_counts_what_was_recorded(
    replay_factory: ReplayFactory, exporter_factory: ExporterFactory
) -> None:
    """The exporter, unmodified, consumes the shipped capture: every recorded trade and orderbook update
    is counted, and with retime the block timestamps are current rather than the capture's age."""
    expected = recorded_updates(SHIPPED)
    trades = sum(
        len(u["trades"]) for (channel, _), ups in expected.items() if channel == ch.TRADES for u in ups
    )
    book_updates = sum(len(ups) for (channel, _), ups in expected.items() if channel == ch.ORDERBOOK)
    replay = await replay_factory(SHIPPED, speed=0, retime=True)
    source = replay.source
    assert isinstance(source, ReplaySource)
    exporter = await exporter_factory(replay)
    await wait_for(lambda: sum(replay.hub.counts().values()) >= 2 + 2 * len(source.tickers()), timeout=20)
    replay.resume()
    await wait_for(lambda: source.finished, timeout=20, message="replay finished")

    async def counted() -> Samples:
        samples = await scrape(exporter.metrics_url)
        done = metric_sum(samples, "dydx_trades_total") >= trades
        return (
            samples
            if done and metric_sum(samples, "dydx_updates_total", channel=ch.ORDERBOOK) >= book_updates
            else {}
        )

    samples = await wait_for(counted, timeout=20, message="exporter counted the replay")
    assert metric_sum(samples, "dydx_trades_total") == trades > 0
    assert metric_sum(samples, "dydx_updates_total", channel=ch.ORDERBOOK) == book_updates
    assert metric_value(samples, "dydx_block_height") == source.height()[0]
    block_time = metric_value(samples, "dydx_block_timestamp_seconds")
    assert block_time is not None and abs(block_time - time.time()) < 30
    assert metric_sum(samples, "dydx_message_id_gaps_total") == 0
