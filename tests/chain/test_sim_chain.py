"""The simulator's chain apart from its indexer (exporter.simulator.chain), without the rest of the server:
a synthetic market as the chain, the IndexerFeed in front of a recording publisher, and the CometBFT RPC on
a loopback port. Fast (well under a second per test)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from exporter.feed.heads import parse_status, parse_time
from exporter.protocol import channels as ch
from exporter.simulator import formats
from exporter.simulator.chain import MAINNET, Chain, ChainedSource, ChainRpc, rfc3339_nanos
from exporter.simulator.market import MarketConfig, MarketModel
from tests.helpers import wait_for

BLOCK_TIME = 0.05


class Recorder:
    """The hub's place: what the indexer published, in order."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, str | None, Any]] = []

    def publish(self, channel: str, key: str | None, contents: Any, extra: bytes = b"") -> None:
        self.frames.append((channel, key, contents))

    def heights(self) -> list[int]:
        return [int(c["blockHeight"]) for channel, _, c in self.frames if channel == ch.BLOCK_HEIGHT]


class Rig:
    def __init__(self, rate: float = 0.2) -> None:
        self.out = Recorder()
        self.chain = Chain(self.out, MAINNET, BLOCK_TIME)
        market = MarketModel(
            MarketConfig(seed=3, markets=2, block_time=BLOCK_TIME, rate=rate), self.chain.feed
        )
        self.source: ChainedSource = self.chain.attach(market)

    def blocks(self, count: int) -> None:
        """Advance the chain by `count` blocks of exchange time (now)."""
        ticks = count * round(BLOCK_TIME / self.source.tick_interval)
        for _ in range(ticks):
            self.source.advance(time.time())


@pytest.fixture
def rig() -> Rig:
    return Rig()


@pytest.fixture
async def rpc(rig: Rig) -> AsyncIterator[ChainRpc]:
    server = ChainRpc(rig.chain, "127.0.0.1", 0)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.json(content_type=None)


def test_rfc3339_nanos_round_trips_through_the_exporters_parser() -> None:
    stamp = 1772651467.1
    text = rfc3339_nanos(stamp)
    assert text.endswith("Z") and len(text.split(".")[1]) == 10  # nine digits and Z
    assert parse_time(text) == pytest.approx(stamp, abs=1e-6)


def test_the_indexer_publishes_each_block_the_chain_makes(rig: Rig) -> None:
    rig.blocks(5)
    chain_height, chain_at = rig.chain.chain_head()
    assert rig.out.heights()[-1] == chain_height
    assert rig.chain.indexer_head()[0] == chain_height
    assert rig.chain.indexer_head()[1] == pytest.approx(chain_at, abs=1e-3)
    assert rig.source.height()[0] == chain_height  # REST's head
    snap = rig.source.snapshot(ch.BLOCK_HEIGHT, None)
    assert snap["height"] == str(chain_height)


def test_a_halted_chain_makes_nothing_and_the_indexer_publishes_nothing(rig: Rig) -> None:
    rig.blocks(3)
    published = len(rig.out.frames)
    height = rig.chain.chain_head()[0]
    rig.chain.start_halt()
    rig.blocks(10)
    assert rig.chain.chain_head()[0] == height
    assert len(rig.out.frames) == published  # no block, no trade, no book update
    rig.chain.end_halt()
    rig.blocks(2)
    assert rig.chain.chain_head()[0] == height + 2
    assert rig.out.heights()[-1] == height + 2


async def test_a_lagging_indexer_holds_every_frame_back_and_catches_up_when_it_ends(rig: Rig) -> None:
    rig.blocks(2)
    rig.chain.start_indexer_lag(0.3, growing=False)
    start = rig.chain.chain_head()[0]
    rig.blocks(4)
    assert rig.chain.chain_head()[0] == start + 4
    assert rig.chain.indexer_head()[0] == start  # nothing released yet
    assert rig.source.height()[0] == start and rig.source.snapshot(ch.BLOCK_HEIGHT, None)["height"] == str(
        start
    )
    assert rig.chain.truth()["indexer"]["behind_blocks"] == 4
    await asyncio.sleep(0.35)
    assert rig.chain.feed.release() > 0
    assert rig.chain.indexer_head()[0] == start + 4
    rig.blocks(3)
    rig.chain.end_indexer_lag()  # the backlog goes out at once, in order
    heights = rig.out.heights()
    assert heights == sorted(heights) and heights[-1] == start + 7
    assert rig.chain.feed.held == 0


def test_a_growing_lag_starts_at_zero() -> None:
    rig = Rig()
    rig.chain.start_indexer_lag(60.0, growing=True)
    delay = rig.chain.feed.delay
    assert delay is not None
    now = time.monotonic()
    assert delay(now) == pytest.approx(0.0, abs=0.01)
    assert delay(now + 10) == pytest.approx(5.0, abs=0.01)
    assert delay(now + 1000) == 60.0


def test_rest_lag_trails_the_indexers_head_by_blocks(rig: Rig) -> None:
    rig.blocks(10)
    rig.chain.rest_lag_blocks = 4
    indexer = rig.chain.indexer_head()[0]
    assert rig.source.height()[0] == indexer - 4
    assert rig.source.snapshot(ch.BLOCK_HEIGHT, None)["height"] == str(indexer)  # the WebSocket is not


async def test_status_and_block_have_cometbft_shapes(rig: Rig, rpc: ChainRpc) -> None:
    rig.blocks(3)
    height, at = rig.chain.chain_head()
    status, body = await get(rpc.url + "/status")
    assert status == 200 and body["jsonrpc"] == "2.0" and body["id"] == -1
    sync = body["result"]["sync_info"]
    assert body["result"]["node_info"]["network"] == "dydx-mainnet-1"
    assert sync["latest_block_height"] == str(height) and sync["catching_up"] is False
    assert parse_status(body).block_time == pytest.approx(at, abs=1e-6)
    status, block = await get(rpc.url + "/block")
    header = block["result"]["block"]["header"]
    assert status == 200 and header["height"] == str(height) and header["chain_id"] == MAINNET
    assert parse_time(header["time"]) == pytest.approx(at, abs=1e-6)
    status, old = await get(rpc.url + f"/block?height={height - 1}")
    assert status == 200 and old["result"]["block"]["header"]["height"] == str(height - 1)
    status, missing = await get(rpc.url + "/block?height=1")
    assert status == 500 and missing["error"]["code"] == -32603


async def test_a_catching_up_node_freezes_its_head_and_says_so(rig: Rig, rpc: ChainRpc) -> None:
    rig.blocks(2)
    rig.chain.start_catching_up()
    frozen = rig.chain.chain_head()[0]
    rig.blocks(3)
    _, body = await get(rpc.url + "/status")
    assert body["result"]["sync_info"]["catching_up"] is True
    assert body["result"]["sync_info"]["latest_block_height"] == str(frozen)
    rig.chain.catching_up_at = None
    _, body = await get(rpc.url + "/status")
    assert body["result"]["sync_info"]["latest_block_height"] == str(frozen + 3)


async def test_a_down_node_drops_the_connection_or_answers_an_error(rig: Rig, rpc: ChainRpc) -> None:
    rig.chain.rpc_down = True
    with pytest.raises(aiohttp.ClientError):
        await get(rpc.url + "/status")
    rig.chain.rpc_status = 503
    status, _ = await get(rpc.url + "/status")
    assert status == 503
    rig.chain.rpc_down, rig.chain.rpc_status = False, None
    status, _ = await get(rpc.url + "/status")
    assert status == 200


class FakeSession:
    """What the hub and link_lag know of a session."""

    def __init__(self, connection_id: str, opened_at: float) -> None:
        self.connection_id = connection_id
        self.opened_at = opened_at
        self.closing = False
        self.sent: list[bytes] = []

    def send_data(self, body: bytes) -> None:
        self.sent.append(body)

    def send_batch(self, body: bytes) -> None:
        self.sent.append(b"batch:" + body)


class FakeHub:
    def __init__(self) -> None:
        self.subs: dict[tuple[str, str | None], dict[Any, bool]] = {}

    def publish(self, body: bytes) -> None:
        for subscribers in self.subs.values():
            for subscriber, batched in subscribers.items():
                (subscriber.send_batch if batched else subscriber.send_data)(body)


async def test_link_lag_delays_one_connection_in_order_and_unwraps_it() -> None:
    hub = FakeHub()
    chain = Chain(Recorder())
    chain.attach(MarketModel(MarketConfig(markets=1), chain.feed), hub)
    first, second = FakeSession("id-a", 1.0), FakeSession("id-b", 2.0)
    hub.subs[(ch.BLOCK_HEIGHT, None)] = {first: False, second: False}
    assert chain.start_link_lag([second, first], "1", 0.2) == "id-b"  # index in order of arrival
    with pytest.raises(ValueError, match="id-a"):
        chain.start_link_lag([first, second], "nope", 1.0)
    for n in range(3):
        hub.publish(b"%d" % n)
    assert first.sent == [b"0", b"1", b"2"] and second.sent == []
    # The session's own unsubscribe finds its stand-in (it compares equal to the session).
    assert second in hub.subs[(ch.BLOCK_HEIGHT, None)]
    runner = asyncio.create_task(chain.run())
    try:
        await wait_for(lambda: len(second.sent) == 3, timeout=2.0)
        assert second.sent == [b"0", b"1", b"2"]
        hub.publish(b"3")
        chain.end_link_lag("id-b")
        assert second.sent[-1] == b"3" and chain.truth()["connections"] == {}
        assert all(type(s) is FakeSession for s in hub.subs[(ch.BLOCK_HEIGHT, None)])
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


def test_truth_names_every_head(rig: Rig) -> None:
    rig.blocks(3)
    rig.chain.rest_lag_blocks = 1
    truth = rig.chain.truth()
    height = rig.chain.chain_head()[0]
    assert truth["network"] == MAINNET
    assert truth["chain"] == {
        "height": height,
        "time": formats.iso_ms(rig.chain.chain_head()[1]),
        "halted": False,
    }
    assert truth["indexer"]["height"] == height and truth["indexer"]["behind_blocks"] == 0
    assert truth["rest"]["height"] == height - 1
    assert truth["rpc"] == {"up": True, "catching_up": False, "height": height}


def test_a_block_frame_the_heads_cannot_read_is_passed_on_and_not_recorded() -> None:
    """A replayed capture may carry one: clients get it as it was, the chain's bookkeeping skips it."""
    out = Recorder()
    chain = Chain(out)
    chain.feed.publish(ch.BLOCK_HEIGHT, ch.BLOCK_HEIGHT_ID, {"blockHeight": "x", "time": "later"})
    chain.feed.publish(ch.BLOCK_HEIGHT, ch.BLOCK_HEIGHT_ID, {"height": "5"})
    assert len(out.frames) == 2
    assert not chain.feed.heads and not chain.feed.chain_heads


def test_rest_lag_holds_back_rest_trades_and_trades_snapshots() -> None:
    """socks fetches a subscription's snapshot from comlink, so both trail with REST's replicas."""
    rig = Rig(rate=20.0)
    rig.blocks(40)
    ticker = rig.source.tickers()[0]
    rows = rig.source.rest_trades(ticker) or []
    heights = {int(r["createdAtHeight"]) for r in rows}
    rig.chain.rest_lag_blocks = 15
    rest_head = rig.source.height()[0]
    assert max(heights) > rest_head, "trades in the last 15 blocks, or this proves nothing"
    lagged = rig.source.rest_trades(ticker) or []
    assert lagged and all(int(r["createdAtHeight"]) <= rest_head for r in lagged)
    assert lagged == [r for r in rows if int(r["createdAtHeight"]) <= rest_head]
    assert rig.source.snapshot(ch.TRADES, ticker) == {"trades": lagged}
