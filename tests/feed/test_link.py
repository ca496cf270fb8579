"""One Link against a scripted WebSocket server on loopback: subscribe, ping, close codes, 429, dead links.

The server here is real (aiohttp on 127.0.0.1:0) and scripted per test, for behaviours the simulator does
not expose directly (the exact handshake status, a server that never pings). The sink and observer
record what the link reports, which is what the pipeline would turn into metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from exporter.config import FeedSettings
from exporter.feed.backoff import Pacer
from exporter.feed.connection import ACTIVE, Link, LinkDeps, SubKey
from exporter.feed.sink import Connected, Control, ServerError, Subscribed
from exporter.lifecycle import cancel_and_wait
from exporter.protocol import channels as ch
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(30)


class RecordingSink:
    """Decodes just enough of a frame to return the control events the pool acts on."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.opened = 0
        self.closed = 0

    def link_opened(self, link: str) -> None:
        self.opened += 1

    def handle(self, link: str, raw: str | bytes, received_at: float) -> Control | None:
        frame = orjson.loads(raw)
        self.frames.append(frame)
        kind = frame.get("type")
        if kind == ch.T_CONNECTED:
            return Connected(link, frame["connection_id"])
        if kind == ch.T_SUBSCRIBED:
            return Subscribed(link, frame["channel"], frame.get("id"), frame["message_id"])
        if kind == ch.T_ERROR:
            message = frame["message"]
            return ServerError(
                link, message, ch.classify_error(message), frame.get("channel"), frame.get("id")
            )
        return None

    def link_closed(self, link: str) -> None:
        self.closed += 1

    def forget_market(self, ticker: str) -> None:
        pass

    def last_data_at(self, link: str, channel: str) -> float | None:
        return None


class RecordingObserver:
    def __init__(self) -> None:
        self.calls: Counter[tuple[str, object]] = Counter()
        self.rtts: list[float] = []
        self.up: dict[str, bool] = {}

    def link_up(self, link: str, up: bool) -> None:
        self.up[link] = up

    def link_disconnected(self, link: str, code: int) -> None:
        self.calls["disconnect", code] += 1

    def reconnected(self) -> None:
        self.calls["reconnect", None] += 1

    def connection_failed(self, reason: str) -> None:
        self.calls["failed", reason] += 1

    def ping_rtt(self, seconds: float) -> None:
        self.rtts.append(seconds)

    def subscriptions(self, counts: Mapping[tuple[str, str], int]) -> None:
        pass

    def subscription_failed(self, channel: str, reason: str) -> None:
        self.calls["sub_failed", reason] += 1

    def component_up(self, component: str, up: bool) -> None:
        pass

    def rest_request(self, endpoint: str, code: str, seconds: float) -> None:
        pass


class Events:
    def __init__(self) -> None:
        self.limits: list[SubKey] = []

    def subscriptions_changed(self) -> None:
        pass

    def limit_reached(self, link: Link, key: SubKey) -> None:
        self.limits.append(key)


@dataclass
class Script:
    """What the scripted server does; tests flip these between connections."""

    reject_status: int = 0
    retry_after: str = ""
    ping_every: float = 0.0
    send_connected: bool = True
    close_after_subscribe: int | None = None  # close code after the first subscribed frame
    fail_first_subscribes: int = 0  # answer "could not fetch" this many times
    unknown_ids: set[str] = field(default_factory=set)  # answer "Invalid subscription id"
    cap: int | None = None  # per-connection cap of every channel
    handshakes: int = 0
    handshake_times: list[float] = field(default_factory=list)
    subscribes: list[tuple[float, str, str | None]] = field(default_factory=list)
    unsubscribes: list[tuple[str, str | None]] = field(default_factory=list)
    pongs: int = 0


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Script, str]]:
    script = Script()

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        script.handshakes += 1
        script.handshake_times.append(time.monotonic())
        if script.reject_status:
            headers = {"Retry-After": script.retry_after} if script.retry_after else {}
            return web.Response(status=script.reject_status, headers=headers)
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        pinger: asyncio.Task[None] | None = None
        if script.ping_every:

            async def ping() -> None:
                while True:
                    await asyncio.sleep(script.ping_every)
                    await ws.ping(b"srv")

            pinger = asyncio.create_task(ping())
        message_id = 0
        try:
            if script.send_connected:
                await ws.send_str(
                    orjson.dumps({"type": "connected", "connection_id": "c", "message_id": 0}).decode()
                )
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.PONG:
                    script.pongs += 1
                    continue
                if msg.type is aiohttp.WSMsgType.PING:
                    await ws.pong(msg.data)
                    continue
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                body = orjson.loads(msg.data)
                if body["type"] == "unsubscribe":
                    script.unsubscribes.append((body["channel"], body.get("id")))
                    continue
                script.subscribes.append((time.monotonic(), body["channel"], body.get("id")))
                message_id += 1
                reply: dict[str, Any] = {
                    "message_id": message_id,
                    "channel": body["channel"],
                    "id": body.get("id"),
                }
                subscribed_here = sum(1 for _, c, _ in script.subscribes if c == body["channel"])
                if script.fail_first_subscribes > 0:
                    script.fail_first_subscribes -= 1
                    reply |= {"type": "error", "message": ch.err_could_not_fetch(body["channel"])}
                elif body.get("id") in script.unknown_ids:
                    message = ch.err_invalid_subscription_id(body["channel"], body["id"])
                    reply = {"type": "error", "message": message, "message_id": message_id}
                elif script.cap is not None and subscribed_here > script.cap:
                    message = ch.err_subscription_limit(body["channel"], script.cap)
                    reply = {"type": "error", "message": message, "message_id": message_id}
                else:
                    reply |= {"type": "subscribed", "connection_id": "c", "contents": {}}
                await ws.send_str(orjson.dumps(reply).decode())
                if reply["type"] == "subscribed" and script.close_after_subscribe is not None:
                    code, script.close_after_subscribe = script.close_after_subscribe, None
                    await ws.close(code=code, message=b"bye")
        finally:
            await cancel_and_wait(pinger)
        return ws

    app = web.Application()
    app.router.add_get("/v4/ws", ws_handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield script, f"ws://127.0.0.1:{port}/v4/ws"
    finally:
        await runner.cleanup()


@pytest.fixture
async def make_link() -> AsyncIterator[Any]:
    links: list[Link] = []
    sessions: list[aiohttp.ClientSession] = []

    async def make(
        url: str, want: Sequence[SubKey] = (), **feed: Any
    ) -> tuple[Link, RecordingSink, RecordingObserver, Events]:
        """A link to `url` with the tests' short timings (`feed` overrides them); with `want`, it wants
        those subscriptions and is started."""
        settings = FeedSettings(
            ws_url=url,
            rest_url="http://127.0.0.1:1",
            backoff_initial=0.05,
            backoff_max=0.2,
            handshake_timeout=1.0,
            ping_interval=0.2,
            ping_timeout=5.0,
            subscribe_timeout=2.0,
            resubscribe_delay=0.1,
        )
        settings = dataclasses.replace(settings, **feed)
        session = aiohttp.ClientSession()
        sessions.append(session)
        sink, observer, events = RecordingSink(), RecordingObserver(), Events()
        link = Link("conn-0", LinkDeps(settings, session, sink, observer, Pacer(100.0, burst=4), events))
        links.append(link)
        if want:
            link.want(list(want))
            await link.start()
        return link, sink, observer, events

    try:
        yield make
    finally:
        for link in links:
            await link.stop()
        for session in sessions:
            await session.close()


TRADES_BTC: SubKey = (ch.TRADES, "BTC-USD")


async def test_subscribes_after_connected_and_unsubscribes_on_stop(scripted, make_link):
    script, url = scripted
    link, _, observer, _ = await make_link(url, [TRADES_BTC, (ch.BLOCK_HEIGHT, None)])
    await wait_for(
        lambda: link.state_of(TRADES_BTC) == ACTIVE and link.state_of((ch.BLOCK_HEIGHT, None)) == ACTIVE
    )
    assert link.up and observer.up["conn-0"] and link.not_ready_reasons() == []
    assert {(c, i) for _, c, i in script.subscribes} == {TRADES_BTC, (ch.BLOCK_HEIGHT, None)}
    await wait_for(lambda: observer.rtts, message="own ping answered")  # server auto-pongs our pings
    await link.stop()
    assert set(script.unsubscribes) == {TRADES_BTC, (ch.BLOCK_HEIGHT, None)}
    assert observer.up["conn-0"] is False


async def test_server_close_is_counted_by_code_and_everything_is_resubscribed(scripted, make_link):
    script, url = scripted
    script.close_after_subscribe = ch.CLOSE_SERVICE_RESTARTING
    link, sink, observer, _ = await make_link(url, [TRADES_BTC])
    await wait_for(lambda: observer.calls["reconnect", None] == 1 and link.state_of(TRADES_BTC) == ACTIVE)
    assert observer.calls["disconnect", 1012] == 1
    assert [i for _, c, i in script.subscribes].count("BTC-USD") == 2  # fresh snapshot after reconnect
    assert sink.opened == 2 and sink.closed == 1


async def test_handshake_429_honours_retry_after(scripted, make_link):
    script, url = scripted
    script.reject_status, script.retry_after = 429, "1"
    link, _, observer, _ = await make_link(url, [TRADES_BTC])
    await wait_for(lambda: script.handshakes >= 1)
    script.reject_status = 0
    await wait_for(lambda: link.state_of(TRADES_BTC) == ACTIVE, timeout=5)
    assert observer.calls["failed", "http_429"] == 1
    gap = script.handshake_times[1] - script.handshake_times[0]
    assert gap >= 0.95, f"reconnected after {gap:.2f}s despite Retry-After: 1"
    assert "not connected" not in " ".join(link.not_ready_reasons())


async def test_answers_server_pings_and_declares_a_link_without_pings_dead(scripted, make_link):
    script, url = scripted
    script.ping_every = 0.1
    link, _, observer, _ = await make_link(url, [TRADES_BTC], ping_timeout=0.6)
    await wait_for(lambda: script.pongs >= 3, message="link pongs the server's pings")
    assert observer.calls["failed", "ping_timeout"] == 0
    script.ping_every = 0.0  # the next connection never pings
    await link.stop()
    _, _, observer2, _ = await make_link(url, [TRADES_BTC], ping_timeout=0.6)
    await wait_for(lambda: observer2.calls["failed", "ping_timeout"] >= 1, timeout=5)


async def test_silent_server_is_dead_after_handshake_timeout(scripted, make_link):
    script, url = scripted
    script.send_connected = False
    link, _, observer, _ = await make_link(url, handshake_timeout=0.5)
    await link.start()
    await wait_for(lambda: observer.calls["failed", "silent"] >= 1, timeout=5)
    assert not link.up and "silent" in link.not_ready_reasons()[0]


async def test_snapshot_fetch_failure_is_retried_within_the_per_key_rate(scripted, make_link):
    script, url = scripted
    script.fail_first_subscribes = 3
    link, _, observer, _ = await make_link(url, [TRADES_BTC], resubscribe_delay=0.0)
    await wait_for(lambda: link.state_of(TRADES_BTC) == ACTIVE, timeout=5)
    assert observer.calls["sub_failed", "snapshot_fetch_failed"] == 3
    times = [t for t, _, i in script.subscribes if i == "BTC-USD"]
    assert len(times) == 4
    # Never more than 2 attempts of one (channel, id) inside any 1 s window.
    assert all(b - a >= 0.5 for a, b in zip(times, times[2:], strict=False))


async def test_unreachable_server_is_counted_as_refused(make_link):
    link, _, observer, _ = await make_link("ws://127.0.0.1:1/v4/ws")
    await link.start()
    await wait_for(lambda: observer.calls["failed", "refused"] >= 2, timeout=5)
    assert not link.up


async def test_rejected_market_is_retried_with_backoff_then_given_up_until_rediscovery(scripted, make_link):
    script, url = scripted
    script.unknown_ids = {"NEW-USD"}
    new = (ch.TRADES, "NEW-USD")
    link, _, observer, _ = await make_link(
        url, [TRADES_BTC, new], subscribe_retries=3, backoff_initial=0.05, backoff_max=0.1
    )
    await wait_for(lambda: link.state_of(new) == "failed", timeout=5, message="given up")
    assert observer.calls["sub_failed", "invalid_subscription_id"] == 3
    assert link.state_of(TRADES_BTC) == ACTIVE
    assert link.not_ready_reasons() == []  # a market given up on does not hold readiness hostage
    await asyncio.sleep(0.3)
    assert [i for _, _, i in script.subscribes].count("NEW-USD") == 3  # not forever
    script.unknown_ids.clear()
    link.retry_given_up()  # what a discovery refresh does
    await wait_for(lambda: link.state_of(new) == ACTIVE, timeout=5)


async def test_per_connection_cap_moves_the_subscription_elsewhere(scripted, make_link):
    script, url = scripted
    script.cap = 1
    eth = (ch.TRADES, "ETH-USD")
    link, _, observer, events = await make_link(url, [TRADES_BTC])
    await wait_for(lambda: link.state_of(TRADES_BTC) == ACTIVE)
    link.want([eth])
    await wait_for(lambda: events.limits == [eth], timeout=5, message="the pool is told to move ETH-USD")
    assert observer.calls["sub_failed", "subscription_limit"] == 1
    assert link.state_of(TRADES_BTC) == ACTIVE
