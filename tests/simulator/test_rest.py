"""The REST subset: comlink's shapes, limits and error bodies."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from exporter.protocol import channels as ch
from exporter.simulator.server import Simulator
from tests.fixtures.simulator import SimulatorFactory

pytestmark = pytest.mark.timeout(30)


async def get(sim: Simulator, path: str) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as session, session.get(sim.base_url + path) as resp:
        text = await resp.text()
        return resp.status, orjson.loads(text), text


@pytest.fixture
async def sim(simulator_factory: SimulatorFactory) -> Simulator:
    sim = await simulator_factory(markets=4, block_time=0.05, rate=4)
    from tests.helpers import wait_for

    await wait_for(lambda: sim.source.rest_trades("BTC-USD"), message="BTC trades")
    return sim


async def test_perpetual_markets(sim: Simulator) -> None:
    status, body, text = await get(sim, "/v4/perpetualMarkets")
    assert status == 200 and ": " not in text, "compact JSON like Express"
    assert list(body["markets"]) == ["BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD"]
    btc = body["markets"]["BTC-USD"]
    assert list(btc)[:4] == ["clobPairId", "ticker", "status", "oraclePrice"]
    assert btc["status"] in ch.MARKET_STATUSES
    assert isinstance(btc["trades24H"], int) and isinstance(btc["atomicResolution"], int)
    assert btc["tickSize"] == "1" and btc["stepSize"] == "0.0001"
    status, body, _ = await get(sim, "/v4/perpetualMarkets?ticker=ETH-USD")
    assert list(body["markets"]) == ["ETH-USD"]
    status, body, _ = await get(sim, "/v4/perpetualMarkets?limit=2")
    assert len(body["markets"]) == 2
    status, body, _ = await get(sim, "/v4/perpetualMarkets?ticker=NOPE-USD")
    assert status == 404 and body["errors"][0]["msg"]


@pytest.mark.parametrize("limit", ["1001", "0", "-1", "abc"])
async def test_bad_limit_is_400_in_express_validator_format(sim: Simulator, limit: str) -> None:
    status, body, _ = await get(sim, f"/v4/trades/perpetualMarket/BTC-USD?limit={limit}")
    assert status == 400
    assert body == {
        "errors": [
            {
                "value": limit,
                "msg": "limit must be a positive integer that is not greater than max: 1000",
                "param": "limit",
                "location": "query",
            }
        ]
    }


async def test_orderbook_uncrossed_top_100(sim: Simulator) -> None:
    status, body, _ = await get(sim, "/v4/orderbooks/perpetualMarket/BTC-USD")
    assert status == 200
    assert len(body["bids"]) == len(body["asks"]) == 100
    assert float(body["bids"][0]["price"]) < float(body["asks"][0]["price"])
    status, body, _ = await get(sim, "/v4/orderbooks/perpetualMarket/NOPE-USD")
    assert status == 404 and list(body) == ["errors"]


async def test_trades_newest_first_with_paging(sim: Simulator) -> None:
    status, body, _ = await get(sim, "/v4/trades/perpetualMarket/BTC-USD?limit=3")
    rows = body["trades"]
    assert status == 200 and 1 <= len(rows) <= 3 and "pageSize" not in body
    heights = [int(r["createdAtHeight"]) for r in rows]
    assert heights == sorted(heights, reverse=True)
    status, body, _ = await get(sim, "/v4/trades/perpetualMarket/BTC-USD?limit=1&page=1")
    assert body["pageSize"] == 1 and body["offset"] == 0 and body["totalResults"] >= 1
    oldest = heights[-1]
    status, body, _ = await get(
        sim, f"/v4/trades/perpetualMarket/BTC-USD?createdBeforeOrAtHeight={oldest - 1}"
    )
    assert all(int(r["createdAtHeight"]) < oldest for r in body["trades"])


async def test_candles_need_a_resolution(sim: Simulator) -> None:
    status, body, _ = await get(sim, "/v4/candles/perpetualMarkets/BTC-USD?resolution=1MIN&limit=5")
    assert status == 200 and body["candles"][0]["resolution"] == "1MIN"
    status, body, _ = await get(sim, "/v4/candles/perpetualMarkets/BTC-USD")
    assert status == 400 and body["errors"][0]["param"] == "resolution"
    status, _, _ = await get(sim, "/v4/candles/perpetualMarkets/NOPE-USD?resolution=1MIN")
    assert status == 404


async def test_height_and_time(sim: Simulator) -> None:
    status, body, _ = await get(sim, "/v4/height")
    assert status == 200 and list(body) == ["height", "time"] and isinstance(body["height"], str)
    assert int(body["height"]) == sim.source.height()[0]
    status, body, _ = await get(sim, "/v4/time")
    assert list(body) == ["iso", "epoch"] and isinstance(body["epoch"], float)


async def test_rate_limit_429_with_comlink_headers(simulator_factory: SimulatorFactory) -> None:
    sim = await simulator_factory(rest_rate_limit=3)
    async with aiohttp.ClientSession() as session:
        for remaining in ("2", "1", "0"):
            async with session.get(sim.base_url + "/v4/height") as resp:
                assert resp.status == 200 and resp.headers["RateLimit-Remaining"] == remaining
        async with session.get(sim.base_url + "/v4/height") as resp:
            assert resp.status == 429
            assert await resp.json() == {"errors": [{"msg": "Too many requests"}]}
            assert resp.headers["RateLimit-Limit"] == "3"
            assert 0 < int(resp.headers["Retry-After"]) <= 10_000, "milliseconds, as comlink sends it"
