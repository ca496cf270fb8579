"""The simulator seen through an independent WebSocket implementation (`websockets`), as a third-party
dYdX client would: text frames, no permessage-deflate, the documented flows and close codes."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from exporter.protocol import channels as ch
from tests.fixtures.simulator import SimulatorFactory

pytestmark = pytest.mark.timeout(30)


async def test_third_party_client_sees_the_protocol(simulator_factory: SimulatorFactory) -> None:
    sim = await simulator_factory(markets=3, block_time=0.05, rate=4)
    async with connect(sim.ws_url, proxy=None, open_timeout=5, close_timeout=2) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers, "no permessage-deflate"
        first = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(first, str), "frames are text frames"
        connection_id = orjson.loads(first)["connection_id"]
        for message in (
            {"type": "subscribe", "channel": ch.TRADES, "id": "BTC-USD"},
            {"type": "subscribe", "channel": ch.ORDERBOOK, "id": "BTC-USD", "batched": True},
            {"type": "subscribe", "channel": ch.BLOCK_HEIGHT},
            {"type": "subscribe", "channel": ch.MARKETS},
        ):
            await ws.send(orjson.dumps(message).decode())
        seen: set[tuple[str, str]] = set()
        want = {
            ("subscribed", ch.TRADES), ("subscribed", ch.ORDERBOOK), ("subscribed", ch.BLOCK_HEIGHT),
            ("subscribed", ch.MARKETS), ("channel_data", ch.TRADES), ("channel_batch_data", ch.ORDERBOOK),
            ("channel_data", ch.BLOCK_HEIGHT), ("channel_data", ch.MARKETS),
        }  # fmt: skip
        async with asyncio.timeout(10):
            while not want <= seen:
                raw = await ws.recv()
                assert isinstance(raw, str)
                frame = orjson.loads(raw)
                assert frame["connection_id"] == connection_id
                seen.add((frame["type"], frame["channel"]))


async def test_third_party_client_sees_1012_on_shutdown(simulator_factory: SimulatorFactory) -> None:
    sim = await simulator_factory()
    async with connect(sim.ws_url, proxy=None, open_timeout=5, close_timeout=2) as ws:
        await asyncio.wait_for(ws.recv(), 5)
        await sim.stop()
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == ch.CLOSE_SERVICE_RESTARTING
        assert closed.value.rcvd.reason == ch.SERVICE_RESTARTING_REASON
