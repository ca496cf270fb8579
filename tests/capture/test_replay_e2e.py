"""Record from one simulator, replay the file through a second, and check what real WebSocket and REST
clients of the second one get: the recorded contents per (channel, id), in order, under fresh connection
ids and valid per-connection message ids, and REST views that end where the first simulator ended."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter.protocol import channels as ch
from exporter.simulator.capture import replay_source
from exporter.simulator.server import Simulator, SimulatorConfig
from tests.capture.expect import first_snapshots, frames, recorded_updates
from tests.data.make_capture import record_simulator
from tests.fixtures.simulator import FAST_DEFAULTS, SimulatorFactory
from tests.helpers import wait_for
from tests.simulator.probe import Probe

MARKETS = ("BTC-USD", "ETH-USD")
ReplayFactory = Callable[..., Awaitable[Simulator]]


@pytest.fixture
async def replay_factory() -> AsyncIterator[ReplayFactory]:
    """A simulator serving a capture, started paused (resume to start the replay); stopped at teardown."""
    started: list[Simulator] = []

    async def make(path: Path, speed: float = 0.0, **overrides: Any) -> Simulator:
        sim = Simulator(
            SimulatorConfig(**{**FAST_DEFAULTS, "paused": True, **overrides}),
            source_factory=replay_source(path, speed=speed),
        )
        started.append(sim)
        await sim.start()
        return sim

    try:
        yield make
    finally:
        for sim in reversed(started):
            await sim.stop()


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
