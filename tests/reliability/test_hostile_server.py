"""The whole feed loop (socket → Link → Router → metrics) against a hostile indexer on loopback.

tests/state/test_router_properties.py explores frame shapes with hypothesis at the Router; this sends
what only a socket can carry — invalid UTF-8 in a text frame, binary frames, deep nesting, long strings,
frames over --feed.max-frame-bytes and over twice that — through a real connection, and checks that none
of it raises out of the feed loop: every hostile frame is counted in dydx_messages_invalid_total, the link
stays up (only a frame over twice the limit closes it, counted as frame_too_large), the good frames after
the bad ones are still processed, and the exposition stays sane.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import WSMsgType, web

from exporter.protocol import channels as ch
from exporter.protocol import encode
from tests.fixtures.support import metrics
from tests.helpers import metric_sum, metric_value, wait_for
from tests.reliability.support import sum_any

pytestmark = pytest.mark.timeout(30)

MAX_FRAME = 64 * 1024
TICKER = "BTC-USD"


@dataclass
class HostileIndexer:
    """Speaks the protocol well enough to get subscribed, then sends whatever `script` holds."""

    script: asyncio.Queue[tuple[bytes, WSMsgType]] = field(default_factory=asyncio.Queue)
    connections: int = 0
    ws_url: str = ""
    base_url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v4/ws", self._ws)
        app.router.add_get("/v4/perpetualMarkets", self._markets)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/v4/ws"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _markets(self, request: web.Request) -> web.Response:
        market = {"ticker": TICKER, "status": "ACTIVE", "clobPairId": "0", "oraclePrice": "67000"}
        return web.json_response({"markets": {TICKER: market}})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        self.connections += 1
        cid = str(uuid.uuid4())
        mid = 0
        await ws.send_frame(encode.connected(cid), WSMsgType.TEXT)
        sender = asyncio.create_task(self._send_script(ws))
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                request_ = orjson.loads(msg.data)
                if request_.get("type") != "subscribe":
                    continue
                mid += 1
                channel, sub_id = request_["channel"], request_.get("id")
                if channel == ch.BLOCK_HEIGHT:
                    contents: Any = {"height": "100", "time": "2026-03-04T19:21:07.100Z"}
                    sub_id = ch.BLOCK_HEIGHT_ID
                else:
                    contents = {"trades": []}
                await ws.send_frame(encode.subscribed(cid, mid, channel, sub_id, contents), WSMsgType.TEXT)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return ws

    async def _send_script(self, ws: web.WebSocketResponse) -> None:
        while True:
            frame, kind = await self.script.get()
            await ws.send_frame(frame, kind)


@pytest.fixture
async def hostile() -> AsyncIterator[HostileIndexer]:
    server = HostileIndexer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def block_height(cid: str, mid: int, height: int) -> bytes:
    contents = {"blockHeight": str(height), "time": "2026-03-04T19:21:08.190Z"}
    return orjson.dumps(
        {
            "type": "channel_data",
            "connection_id": cid,
            "message_id": mid,
            "id": ch.BLOCK_HEIGHT_ID,
            "channel": ch.BLOCK_HEIGHT,
            "version": "1.0.0",
            "contents": contents,
        }
    )


def hostile_frames(rng: random.Random) -> list[tuple[bytes, WSMsgType]]:
    """Frames every one of which must be counted as invalid (none is a well-formed data frame)."""
    text, binary = WSMsgType.TEXT, WSMsgType.BINARY
    trade = {"id": "x", "size": "NaN", "price": "-1", "side": "UP", "createdAt": "soon", "type": "LIMIT"}
    frames: list[tuple[bytes, WSMsgType]] = [
        (b'{"type": "channel_data", "channel": "\xff\xfe"}', text),  # invalid UTF-8 in a text frame
        (b"\xff\xfe\xfd", binary),
        (b"null", text),
        (b"[]", text),
        (b'"just a string"', text),
        (b"1e999", text),
        (b"[" * 5000 + b"]" * 5000, text),  # deeper than any JSON parser's recursion limit
        (orjson.dumps({"type": "x" * 1_000}), text),
        (b'{"type": "channel_data", "message_id": 5, "channel": "v4_trades", "id": "BTC-USD"', text),
        (orjson.dumps({"type": "channel_data", "message_id": "7", "channel": ch.TRADES, "id": TICKER}), text),
        (
            orjson.dumps(
                {
                    "type": "channel_data",
                    "message_id": 8,
                    "channel": ch.TRADES,
                    "id": TICKER,
                    "version": "2.1.0",
                    "contents": {"trades": [trade]},
                }
            ),
            text,
        ),
        (b'{"type": "channel_data", "pad": "' + b"a" * (MAX_FRAME + 10) + b'"}', text),  # over the limit
    ]
    for _ in range(40):  # random bytes, some of them almost JSON
        size = rng.randint(1, 300)
        blob = bytes(rng.getrandbits(8) for _ in range(size))
        frames.append((b"{" + blob if rng.random() < 0.5 else blob, rng.choice((text, binary))))
    return frames


async def test_hostile_frames_are_counted_and_the_link_survives(hostile, exporter_factory):
    exp = await exporter_factory(
        hostile,
        channels=(ch.TRADES, ch.BLOCK_HEIGHT),
        markets=(TICKER,),
        max_frame_bytes=MAX_FRAME,
        silence_timeout=30.0,
    )

    async def subscribed() -> bool:
        samples = await metrics(exp)
        return metric_sum(samples, "dydx_subscriptions", state="active") == 2

    await wait_for(subscribed, timeout=10, message="subscribed to the hostile indexer")
    before = await metrics(exp)
    frames = hostile_frames(random.Random(8))
    for frame in frames:
        hostile.script.put_nowait(frame)
    # A good frame after all the bad ones: processed, so the loop is alive and in order.
    cid = exp.pool.links[0].connection_id or ""
    hostile.script.put_nowait((block_height(cid, 3, 123), WSMsgType.TEXT))

    async def processed() -> bool:
        return metric_value(await metrics(exp), "dydx_block_height") == 123

    await wait_for(processed, timeout=10, message="the good frame after the hostile ones")
    after = await metrics(exp)
    name = "dydx_messages_invalid_total"
    invalid = metric_sum(after, name) - metric_sum(before, name)
    assert invalid >= len(frames), f"{invalid} of {len(frames)} hostile frames counted as invalid"
    assert metric_sum(after, "dydx_messages_invalid_total", reason="oversized") >= 1
    assert hostile.connections == 1, "the link never dropped"
    assert metric_sum(after, "dydx_ws_connection_failures_total") == 0
    assert metric_sum(after, "dydx_ws_reconnects_total") == 0
    assert metric_sum(after, "dydx_trades_total") == 0, "no trade was made up from garbage"
    for (name, _), value in after.items():
        assert not math.isnan(value) or name.endswith("_ratio"), f"{name} is NaN"

    # Over twice the limit the socket refuses the frame: the link closes, says why, and comes back.
    hostile.script.put_nowait((b'{"pad": "' + b"a" * (2 * MAX_FRAME + 10) + b'"}', WSMsgType.TEXT))

    async def refused_and_back() -> bool:
        samples = await metrics(exp)
        failed = sum_any(samples, "dydx_ws_connection_failures_total", reason="frame_too_large|other")
        return failed >= 1 and hostile.connections >= 2

    await wait_for(refused_and_back, timeout=10, message="oversized frame closes the link, which reconnects")
    await wait_for(subscribed, timeout=10, message="subscribed again")
