"""Every fault kind of the control API: what a client sees while it is active, and after it is cleared."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest

from exporter.protocol import channels as ch
from exporter.simulator import formats
from exporter.simulator.control import is_loopback
from exporter.simulator.server import Simulator
from tests.fixtures.simulator import SimulatorFactory, control
from tests.helpers import wait_for
from tests.simulator.conftest import ProbeFactory
from tests.simulator.probe import Probe

pytestmark = pytest.mark.timeout(30)
FAULTS = "/control/faults"


@pytest.fixture
async def sim(simulator_factory: SimulatorFactory) -> Simulator:
    return await simulator_factory(markets=3, block_time=0.05, rate=2, ping_interval=0.2, pong_timeout=1.0)


async def heights(probes: ProbeFactory, sim: Simulator) -> Probe:
    probe = await probes(sim)
    await probe.subscribe(ch.BLOCK_HEIGHT)
    await probe.next_type("subscribed")
    await probe.next_type("channel_data")
    return probe


def data_count(probe: Probe, channel: str | None = None) -> int:
    return sum(1 for f in probe.frames if f["type"] == "channel_data" and channel in (None, f["channel"]))


@pytest.mark.parametrize(("code", "reason"), [(1012, ch.SERVICE_RESTARTING_REASON), (4000, "")])
async def test_disconnect_with_code(sim: Simulator, probes: ProbeFactory, code: int, reason: str) -> None:
    probe = await heights(probes, sim)
    answer = await control(sim, "POST", FAULTS, {"kind": "disconnect", "code": code})
    assert answer == {"kind": "disconnect", "connections": 1}
    assert await probe.wait_closed() == code
    assert probe.close_reason == reason
    again = await heights(probes, sim)
    assert not again.closed, "new connections are unaffected"


async def test_disconnect_abrupt_drops_tcp_without_close_frame(sim: Simulator, probes: ProbeFactory) -> None:
    probe = await heights(probes, sim)
    await control(sim, "POST", FAULTS, {"kind": "disconnect", "abrupt": True})
    assert await probe.wait_closed() == ch.CLOSE_ABNORMAL
    assert probe.close_reason is None


async def test_stall_everything_then_resume(sim: Simulator, probes: ProbeFactory) -> None:
    probe = await heights(probes, sim)
    answer = await control(sim, "POST", FAULTS, {"kind": "stall"})
    assert answer["fault"]["kind"] == "stall" and answer["fault"]["remaining_seconds"] is None
    await asyncio.sleep(0.05)
    frames, pings = len(probe.frames), probe.pings
    await asyncio.sleep(0.6)
    assert len(probe.frames) == frames and probe.pings == pings, "nothing at all, not even pings"
    assert not probe.closed, "TCP stays open"
    listed = await control(sim, "GET", FAULTS)
    assert [f["kind"] for f in listed["faults"]] == ["stall"]
    assert await control(sim, "DELETE", FAULTS) == {"cleared": 1}
    await wait_for(lambda: len(probe.frames) > frames and probe.pings > pings)
    ids = [f["message_id"] for f in probe.frames]
    assert set(ids) == set(range(max(ids) + 1)), "no message-id gap across a stall"


async def test_stall_one_channel_expires(sim: Simulator, probes: ProbeFactory) -> None:
    probe = await heights(probes, sim)
    await probe.subscribe(ch.ORDERBOOK, "BTC-USD")
    await probe.next(lambda f: f["type"] == "channel_data" and f["channel"] == ch.ORDERBOOK)
    await control(sim, "POST", FAULTS, {"kind": "stall", "channel": ch.ORDERBOOK, "seconds": 0.6})
    await asyncio.sleep(0.05)
    books, blocks = data_count(probe, ch.ORDERBOOK), data_count(probe, ch.BLOCK_HEIGHT)
    await asyncio.sleep(0.4)
    assert data_count(probe, ch.ORDERBOOK) == books, "the stalled channel is silent"
    assert data_count(probe, ch.BLOCK_HEIGHT) > blocks, "other channels keep flowing"
    await wait_for(lambda: data_count(probe, ch.ORDERBOOK) > books, timeout=3)
    assert (await control(sim, "GET", FAULTS))["faults"] == [], "expired after its seconds"


async def test_malformed_frames_then_normal_traffic(sim: Simulator, probes: ProbeFactory) -> None:
    probe = await heights(probes, sim)
    await control(sim, "POST", FAULTS, {"kind": "malformed", "count": 3})
    await wait_for(lambda: len(probe.unparsable) == 3)
    before = data_count(probe)
    await wait_for(lambda: data_count(probe) > before)
    assert not probe.closed


async def test_error_frame_reuses_the_current_id(sim: Simulator, probes: ProbeFactory) -> None:
    probe = await heights(probes, sim)
    await control(sim, "POST", FAULTS, {"kind": "error", "text": "Internal error"})
    error = await probe.next_type("error")
    assert error["message"] == "Internal error"
    earlier = [f["message_id"] for f in probe.frames[: probe.frames.index(error)]]
    assert error["message_id"] == max(earlier)
    await control(sim, "POST", FAULTS, {"kind": "error"})
    assert (await probe.next_type("error"))["message"] == ch.ERR_INTERNAL


async def test_gap_skips_message_ids(sim: Simulator, probes: ProbeFactory) -> None:
    probe = await heights(probes, sim)
    await control(sim, "POST", FAULTS, {"kind": "gap", "count": 5})
    await wait_for(
        lambda: len({f["message_id"] for f in probe.frames}) < max(f["message_id"] for f in probe.frames) + 1
    )
    ids = sorted({f["message_id"] for f in probe.frames})
    missing = set(range(ids[-1] + 1)) - set(ids)
    assert len(missing) == 5 and max(missing) - min(missing) == 4, "five consecutive ids never sent"


def book_state(probe: Probe, ticker: str) -> tuple[float | None, float | None]:
    """Best bid and ask of the book as the stream delivers it (snapshot + absolute level updates)."""
    bids: dict[str, float] = {}
    asks: dict[str, float] = {}
    for frame in probe.frames:
        if frame.get("channel") != ch.ORDERBOOK or frame.get("id") != ticker:
            continue
        if frame["type"] == "subscribed":
            bids = {lvl["price"]: float(lvl["size"]) for lvl in frame["contents"]["bids"]}
            asks = {lvl["price"]: float(lvl["size"]) for lvl in frame["contents"]["asks"]}
        elif frame["type"] == "channel_data":
            for side, book in (("bids", bids), ("asks", asks)):
                for price, size in frame["contents"].get(side, []):
                    if float(size) == 0:
                        book.pop(price, None)
                    else:
                        book[price] = float(size)
    best_bid = max(map(float, bids), default=None)
    best_ask = min(map(float, asks), default=None)
    return best_bid, best_ask


def crossed(probe: Probe, ticker: str) -> bool:
    bid, ask = book_state(probe, ticker)
    return bid is not None and ask is not None and bid >= ask


async def test_cross_makes_the_stream_book_crossed_until_it_expires(
    sim: Simulator, probes: ProbeFactory
) -> None:
    probe = await probes(sim)
    await probe.subscribe(ch.ORDERBOOK, "ETH-USD")
    await probe.next_type("subscribed")
    await asyncio.sleep(0.2)
    assert not crossed(probe, "ETH-USD")
    await control(sim, "POST", FAULTS, {"kind": "cross", "market": "ETH-USD", "seconds": 1.0})
    await wait_for(lambda: crossed(probe, "ETH-USD"), message="book crossed")
    url = sim.base_url + "/v4/orderbooks/perpetualMarket/ETH-USD"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        book = await resp.json()
    assert float(book["bids"][0]["price"]) < float(book["asks"][0]["price"]), "REST stays uncrossed"
    await asyncio.sleep(0.5)
    assert crossed(probe, "ETH-USD"), "stays crossed while the fault lasts"
    await wait_for(lambda: not crossed(probe, "ETH-USD"), timeout=3, message="book uncrossed after expiry")


async def test_lag_shifts_exchange_timestamps(sim: Simulator, probes: ProbeFactory) -> None:
    probe = await heights(probes, sim)
    await control(sim, "POST", FAULTS, {"kind": "lag", "seconds": 5})

    def lag_of_last_block() -> float:
        frame = [f for f in probe.frames if f["type"] == "channel_data"][-1]
        return time.time() - formats.parse_iso(frame["contents"]["time"])

    await wait_for(lambda: lag_of_last_block() > 4.5, message="lagged block time")
    assert lag_of_last_block() < 5.5
    listed = (await control(sim, "GET", FAULTS))["faults"]
    assert listed[0]["kind"] == "lag" and listed[0]["seconds"] == 5
    await control(sim, "DELETE", FAULTS)
    await wait_for(lambda: lag_of_last_block() < 0.5, message="lag gone")


async def test_reject_refuses_new_handshakes_with_retry_after(sim: Simulator, probes: ProbeFactory) -> None:
    existing = await heights(probes, sim)
    await control(sim, "POST", FAULTS, {"kind": "reject", "seconds": 5, "retry_after": 3})
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(sim.ws_url)
    assert refused.value.status == 429
    assert refused.value.headers is not None and refused.value.headers["Retry-After"] == "3"
    before = data_count(existing)
    await wait_for(lambda: data_count(existing) > before, message="existing connections unaffected")
    await control(sim, "DELETE", FAULTS)
    assert not (await heights(probes, sim)).closed


async def test_rest_error_fails_rest_and_snapshots(sim: Simulator, probes: ProbeFactory) -> None:
    await control(sim, "POST", FAULTS, {"kind": "rest_error", "status": 503})
    async with aiohttp.ClientSession() as session, session.get(sim.base_url + "/v4/perpetualMarkets") as resp:
        assert resp.status == 503
        assert (await resp.json())["errors"][0]["msg"]
    probe = await probes(sim)
    await probe.subscribe(ch.TRADES, "BTC-USD")
    error = await probe.next_type("error")
    assert error["message"] == "Internal error, could not fetch data for subscription: v4_trades."
    assert (error["channel"], error["id"]) == (ch.TRADES, "BTC-USD")
    await control(sim, "DELETE", FAULTS)
    await asyncio.sleep(1.0)  # a fresh subscribe-rate window
    await probe.subscribe(ch.TRADES, "BTC-USD")
    assert (await probe.next_type("subscribed"))["id"] == "BTC-USD", "the retry succeeds once cleared"


async def test_rest_slow_delays_rest_and_snapshots(sim: Simulator, probes: ProbeFactory) -> None:
    await control(sim, "POST", FAULTS, {"kind": "rest_slow", "seconds": 10, "delay": 0.5})
    started = time.monotonic()
    async with aiohttp.ClientSession() as session, session.get(sim.base_url + "/v4/height") as resp:
        assert resp.status == 200
    assert time.monotonic() - started >= 0.5
    probe = await probes(sim)
    started = time.monotonic()
    await probe.subscribe(ch.BLOCK_HEIGHT)
    await probe.next_type("subscribed")
    assert time.monotonic() - started >= 0.5


async def test_silent_accepts_and_never_sends(sim: Simulator, probes: ProbeFactory) -> None:
    existing = await heights(probes, sim)
    await control(sim, "POST", FAULTS, {"kind": "silent", "seconds": 5})
    mute = await probes(sim, skip_connected=False)
    await mute.subscribe(ch.BLOCK_HEIGHT)
    before = data_count(existing)
    await wait_for(lambda: data_count(existing) > before + 3)
    assert mute.frames == [] and mute.pings == 0 and not mute.closed
    await control(sim, "DELETE", FAULTS)
    fresh = await probes(sim, skip_connected=False)
    assert (await fresh.next())["type"] == "connected"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"kind": "explode"}, "kind must be one of"),
        ({"kind": "stall", "seconds": -1}, "stall.seconds must be > 0"),
        ({"kind": "stall", "seconds": "5"}, "stall.seconds must be int or float"),
        ({"kind": "stall", "channel": "v4_nope"}, "stall.channel must be one of"),
        ({"kind": "cross"}, "cross needs 'market'"),
        ({"kind": "cross", "market": "NOPE-USD"}, "not a listed market"),
        ({"kind": "gap", "count": 0}, "gap.count must be between 1 and 10000"),
        ({"kind": "reject", "status": 200}, "reject.status must be an HTTP error status"),
        ({"kind": "lag"}, "lag needs 'seconds'"),
        # Each check a parameter declares (base.param(check=...), lasting()), run with the kind's name:
        ({"kind": "lag", "seconds": 1, "duration": 0}, "lag.duration must be > 0 and <= 86400 seconds"),
        ({"kind": "rest_slow", "delay": 86401}, "rest_slow.delay must be > 0 and <= 86400 seconds"),
        ({"kind": "reject", "retry_after": -1}, "reject.retry_after must be > 0"),
        ({"kind": "rpc_down", "status": 302}, "rpc_down.status must be an HTTP error status (400-599)"),
        ({"kind": "rest_lag", "blocks": 0}, "rest_lag.blocks must be between 1 and 10000, not 0"),
        ({"kind": "link_lag", "seconds": 901}, "link_lag holds frames in memory: at most 900 s"),
        (
            {"kind": "candle_gap", "market": "BTC-USD", "resolution": "1MIN", "periods": 1001},
            "candle_gap.periods must be between 1 and 1000",
        ),
        ({"kind": "malformed", "colour": "red"}, "unknown field(s) for malformed: colour"),
        ([1, 2], "body must be a JSON object"),
    ],
)
async def test_bad_fault_requests_are_400_with_a_reason(sim: Simulator, body: object, fragment: str) -> None:
    answer = await control(sim, "POST", FAULTS, body, expect=400)
    assert fragment in answer["error"]
    assert (await control(sim, "GET", FAULTS))["faults"] == []


async def test_pause_and_resume(sim: Simulator) -> None:
    assert (await control(sim, "POST", "/control/pause"))["paused"] is True
    height = sim.source.height()[0]
    await asyncio.sleep(0.3)
    assert sim.source.height()[0] == height, "no blocks while paused"
    await control(sim, "POST", "/control/resume")
    await wait_for(lambda: sim.source.height()[0] > height)


async def test_control_refuses_non_loopback_peers(simulator_factory: SimulatorFactory) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("192.0.2.2")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # UDP connect sends nothing; it picks the outbound address
            address = probe.getsockname()[0]
    except OSError:
        address = "127.0.0.1"
    if is_loopback(address):
        pytest.skip("no non-loopback address on this machine")
    closed = await simulator_factory(host="0.0.0.0")
    opened = await simulator_factory(host="0.0.0.0", allow_remote_control=True)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{address}:{closed.port}/control/status") as resp:
            assert resp.status == 403 and "loopback" in (await resp.json())["error"]
        async with session.get(f"http://{address}:{closed.port}/v4/height") as resp:
            assert resp.status == 200, "only the control API is restricted"
        async with session.get(f"http://{address}:{opened.port}/control/status") as resp:
            assert resp.status == 200
