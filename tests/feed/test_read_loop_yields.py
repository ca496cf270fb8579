"""The feed's read loop does not hold the event loop through a burst of buffered frames.

aiohttp hands over frames it has already read without suspending, so without its periodic yield a Link
would process a whole 256 KiB socket read (thousands of frames) in one go while scrapes and timers wait.
A real server on loopback sends a burst; a ticker on the same loop measures how late it is woken.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from exporter.config import FeedSettings
from exporter.feed.backoff import Pacer
from exporter.feed.connection import Link, LinkDeps, sub_key
from exporter.feed.sink import Control
from exporter.protocol import channels as ch
from tests.feed.test_link import Events, RecordingObserver, RecordingSink
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(60)

BURST_FRAMES = 6000
WORK_PER_FRAME_S = 50e-6  # 6,000 frames: 0.3 s of work; one 256 KiB read alone ≈ 2,600 frames ≈ 0.13 s


class BusySink(RecordingSink):
    """Costs WORK_PER_FRAME_S of CPU per data frame, like a pipeline slower than the socket."""

    def __init__(self) -> None:
        super().__init__()
        self.data_frames = 0

    def handle(self, link: str, raw: str | bytes, received_at: float) -> Control | None:
        if b'"channel_data"' in (raw if isinstance(raw, bytes) else raw.encode()):
            self.data_frames += 1
            end = time.perf_counter() + WORK_PER_FRAME_S
            while time.perf_counter() < end:
                pass
            return None
        return super().handle(link, raw, received_at)


@pytest.fixture
async def burst_server() -> AsyncIterator[str]:
    frame = orjson.dumps(
        {
            "type": "channel_data",
            "connection_id": "c",
            "message_id": 0,
            "id": "BTC-USD",
            "channel": ch.ORDERBOOK,
            "version": "1.0.0",
            "contents": {"bids": [["67012", "1.5"]]},
        }
    ).decode()

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        await ws.send_str(orjson.dumps({"type": "connected", "connection_id": "c", "message_id": 0}).decode())
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT and orjson.loads(msg.data)["type"] == "subscribe":
                await ws.send_str(
                    orjson.dumps(
                        {"type": "subscribed", "connection_id": "c", "message_id": 1, "channel": ch.ORDERBOOK,
                         "id": "BTC-USD", "contents": {"bids": [], "asks": []}}
                    ).decode()
                )  # fmt: skip
                for _ in range(BURST_FRAMES):
                    await ws.send_str(frame)
        return ws

    app = web.Application()
    app.router.add_get("/v4/ws", ws_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"ws://127.0.0.1:{port}/v4/ws"
    finally:
        await runner.cleanup()


async def test_a_burst_of_buffered_frames_lets_timers_run(burst_server: str) -> None:
    sink = BusySink()
    settings = FeedSettings(ws_url=burst_server, rest_url="", backoff_initial=60.0, subscribe_rate=1e6)
    lateness: list[float] = []

    async def ticker() -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(0.001)
            if sink.data_frames:  # only while the burst is being handled
                lateness.append(time.perf_counter() - asked - 0.001)

    async with aiohttp.ClientSession() as session:
        link = Link(
            "conn-0", LinkDeps(settings, session, sink, RecordingObserver(), Pacer(1e6, burst=100), Events())
        )
        link.want([sub_key(ch.ORDERBOOK, "BTC-USD")])
        tick = asyncio.create_task(ticker())
        await link.start()
        try:
            await wait_for(lambda: sink.data_frames == BURST_FRAMES, timeout=30.0)
        finally:
            tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tick
            await link.stop()
    lateness.sort()
    # Without the yield the ticker runs only between socket reads: every wake-up ≈ 0.1 s late, and only a
    # handful of them. With it, the loop is free every READ_SLICE_S (1 ms): hundreds of wake-ups, the
    # median a couple of ms late even on a busy machine.
    assert len(lateness) > 50
    assert lateness[len(lateness) // 2] < 0.010
