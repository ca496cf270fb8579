"""The chain fault kinds through the simulator's control API and its real sockets: what a WebSocket client,
REST and the CometBFT RPC see, and what /control/truth says. A few seconds in all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from exporter.protocol import channels as ch
from exporter.simulator.server import Simulator
from tests.fixtures.simulator import (
    SimulatorFactory,
    control,
    simulator_ws_url,
    start_simulator_process,
)
from tests.helpers import wait_for

BLOCK_TIME = 0.05


class Heights:
    """A raw WebSocket client subscribed to v4_block_height: the heights it received, in order."""

    def __init__(self) -> None:
        self.heights: list[int] = []
        self.connection_id = ""

    async def run(self, url: str, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(url) as ws:
            await ws.send_str(orjson.dumps({"type": "subscribe", "channel": ch.BLOCK_HEIGHT}).decode())
            async for msg in ws:
                frame = orjson.loads(msg.data)
                if frame["type"] == "connected":
                    self.connection_id = frame["connection_id"]
                contents = frame.get("contents") or {}
                height = contents.get("blockHeight") or contents.get("height")
                if height is not None:
                    self.heights.append(int(height))


@pytest.fixture
async def sim(simulator_factory: SimulatorFactory) -> Simulator:
    return await simulator_factory(markets=2, block_time=BLOCK_TIME, rate=0.1, chain_rpc_port=0)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json(content_type=None)


async def rpc_height(sim: Simulator, session: aiohttp.ClientSession) -> int:
    body = await get(session, sim.chain_rpc_url + "/status")
    return int(body["result"]["sync_info"]["latest_block_height"])


async def rest_height(sim: Simulator, session: aiohttp.ClientSession) -> int:
    return int((await get(session, sim.base_url + "/v4/height"))["height"])


async def truth(sim: Simulator) -> dict[str, Any]:
    report = await control(sim, "GET", "/control/truth")
    chain: dict[str, Any] = report["chain"]
    return chain


async def test_chain_halt_stops_the_chain_and_the_indexer_with_it(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    client = Heights()
    reader = asyncio.create_task(client.run(sim.ws_url, session))
    try:
        await wait_for(lambda: len(client.heights) > 3, timeout=5)
        await control(sim, "POST", "/control/faults", {"kind": "chain_halt"})
        halted_at = await rpc_height(sim, session)
        seen = len(client.heights)
        await asyncio.sleep(5 * BLOCK_TIME)
        assert await rpc_height(sim, session) == halted_at
        assert await rest_height(sim, session) == halted_at
        assert client.heights[-1] <= halted_at and len(client.heights) <= seen + 1
        assert (await truth(sim))["chain"]["halted"] is True
        await control(sim, "DELETE", "/control/faults")
        await wait_for(lambda: client.heights[-1] > halted_at, timeout=5)
        assert (await truth(sim))["chain"]["halted"] is False
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_indexer_lag_leaves_the_chain_ahead_of_ws_and_rest(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    await control(sim, "POST", "/control/faults", {"kind": "indexer_lag", "blocks": 20})

    async def behind() -> bool:
        return bool((await truth(sim))["indexer"]["behind_blocks"] >= 15)

    await wait_for(behind, timeout=5)
    chain, rest = await rpc_height(sim, session), await rest_height(sim, session)
    assert chain - rest >= 15
    await control(sim, "DELETE", "/control/faults")  # the backlog goes out at once
    assert (await truth(sim))["indexer"]["behind_blocks"] <= 1


async def test_rest_lag_trails_the_websocket_by_blocks(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    await wait_for(lambda: sim.chain.feed.heads and len(sim.chain.feed.heads) > 10, timeout=5)
    await control(sim, "POST", "/control/faults", {"kind": "rest_lag", "blocks": 7})
    rest = await rest_height(sim, session)
    report = await truth(sim)  # read after REST: the indexer can only have moved on meanwhile
    assert report["rest"]["lag_blocks"] == 7
    assert report["indexer"]["height"] - report["rest"]["height"] == 7
    assert report["indexer"]["height"] - rest in range(7, 12)


async def test_link_lag_delays_one_connection_and_not_the_other(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    first, second = Heights(), Heights()
    readers = [asyncio.create_task(first.run(sim.ws_url, session))]
    await wait_for(lambda: first.heights, timeout=5)
    readers.append(asyncio.create_task(second.run(sim.ws_url, session)))
    try:
        await wait_for(lambda: second.heights, timeout=5)
        answer = await control(
            sim, "POST", "/control/faults", {"kind": "link_lag", "connection": "0", "seconds": 0.5}
        )
        assert answer["fault"]["connection"] == "0"
        await asyncio.sleep(0.6)
        lead = second.heights[-1] - first.heights[-1]
        assert lead >= 0.5 / BLOCK_TIME * 0.6, (first.heights[-3:], second.heights[-3:])
        assert list((await truth(sim))["connections"]) == [first.connection_id]
        await control(sim, "DELETE", "/control/faults")
        await wait_for(lambda: abs(second.heights[-1] - first.heights[-1]) <= 1, timeout=5)
        assert first.heights == sorted(first.heights)  # in order, nothing lost or reordered
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


async def test_rpc_down_and_catching_up(sim: Simulator, session: aiohttp.ClientSession) -> None:
    await control(sim, "POST", "/control/faults", {"kind": "rpc_down", "status": 503})
    async with session.get(sim.chain_rpc_url + "/status") as resp:
        assert resp.status == 503
    await control(sim, "DELETE", "/control/faults")
    await control(sim, "POST", "/control/faults", {"kind": "rpc_catching_up"})
    frozen = await rpc_height(sim, session)
    await asyncio.sleep(4 * BLOCK_TIME)
    body = await get(session, sim.chain_rpc_url + "/status")
    assert body["result"]["sync_info"]["catching_up"] is True
    assert int(body["result"]["sync_info"]["latest_block_height"]) == frozen
    assert (await truth(sim))["rpc"] == {"up": True, "catching_up": True, "height": frozen}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "indexer_lag", "blocks": 3, "seconds": 1}, "exactly one of 'blocks' and 'seconds'"),
        ({"kind": "indexer_lag"}, "exactly one of 'blocks' and 'seconds'"),
        ({"kind": "rest_lag"}, "rest_lag needs 'blocks'"),
        ({"kind": "link_lag", "seconds": 1, "connection": "7"}, "neither an index nor one of"),
        ({"kind": "rpc_down", "status": 200}, "HTTP error status"),
        ({"kind": "indexer_lag", "seconds": 901}, "at most 900 s"),
        ({"kind": "indexer_lag", "blocks": 100_000}, "at most 900 s, not 5000"),  # 0.05 s blocks
        ({"kind": "link_lag", "seconds": 3600}, "at most 900 s"),
    ],
)
async def test_bad_chain_faults_are_refused_with_a_reason(
    sim: Simulator, body: dict[str, Any], message: str
) -> None:
    answer = await control(sim, "POST", "/control/faults", body, expect=400)
    assert message in answer["error"]
    assert await control(sim, "GET", "/control/faults") == {"faults": []}


async def test_simulate_serves_the_chain_rpc_from_its_flag(session: aiohttp.ClientSession) -> None:
    process = await start_simulator_process(
        "--chain-rpc.listen-address", "127.0.0.1:0", "--chain-rpc.network", "dydx-testnet-4", "--markets", "2"
    )
    try:
        await simulator_ws_url(process)
        started = await process.wait_event("simulator_chain_rpc_started", 10)
        body = await get(session, started["url"] + "/status")
        assert body["result"]["node_info"]["network"] == "dydx-testnet-4"
    finally:
        await process.close()
