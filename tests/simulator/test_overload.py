"""Overload and bad input cannot crash the simulator: a client that never reads is cut off with memory
bounded, floods and garbage are answered or refused, and a thousand connections come and go cleanly."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct

import aiohttp
import orjson
import pytest

from exporter.protocol import channels as ch
from exporter.simulator.server import Simulator
from tests.fixtures.simulator import SimulatorFactory
from tests.helpers import wait_for
from tests.simulator.conftest import ProbeFactory

pytestmark = pytest.mark.timeout(60)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def masked_text_frame(payload: bytes) -> bytes:
    """A client → server text frame (clients must mask)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def open_non_reader(sim: Simulator, subscriptions: list[dict[str, object]]) -> socket.socket:
    """A WebSocket client that subscribes and then never reads another byte (tiny receive buffer)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", sim.port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /v4/ws HTTP/1.1\r\nHost: 127.0.0.1:{sim.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = await loop.sock_recv(sock, 1)  # byte by byte: read the handshake and nothing more
        assert chunk, "server closed during the handshake"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101")
    for message in subscriptions:
        await loop.sock_sendall(sock, masked_text_frame(orjson.dumps(message)))
    return sock


async def test_a_client_that_never_reads_is_cut_off_and_memory_stays_bounded(
    simulator_factory: SimulatorFactory, probes: ProbeFactory
) -> None:
    limit = 256 * 1024
    sim = await simulator_factory(markets=3, block_time=0.05, rate=40, send_buffer_bytes=limit)
    healthy = await probes(sim)
    await healthy.subscribe(ch.BLOCK_HEIGHT)
    subscriptions: list[dict[str, object]] = [{"type": "subscribe", "channel": ch.MARKETS}]
    subscriptions += [{"type": "subscribe", "channel": ch.ORDERBOOK, "id": t} for t in sim.source.tickers()]
    subscriptions += [{"type": "subscribe", "channel": ch.TRADES, "id": t} for t in sim.source.tickers()]
    rss_before = rss_bytes()
    sock = await open_non_reader(sim, subscriptions)
    try:
        peak = 0

        def cut_off() -> bool:
            nonlocal peak
            peak = max(peak, sum(s.queued_bytes for s in sim.sessions))
            return sim.stats.slow_consumers_cut == 1

        await wait_for(cut_off, timeout=30, interval=0.01, message="slow consumer cut off")
        assert peak <= limit, f"queued {peak} bytes for one client, limit {limit}"
        await wait_for(lambda: len(sim.sessions) == 1, message="only the healthy client remains")
        assert rss_bytes() - rss_before < 64 * 1024 * 1024
        before = len(healthy.frames)
        await wait_for(lambda: len(healthy.frames) > before, message="others keep being served")
        assert not healthy.closed
    finally:
        sock.close()


async def test_subscribe_flood_is_rate_limited(simulator: Simulator, probes: ProbeFactory) -> None:
    flooder = await probes(simulator)
    message = orjson.dumps({"type": "subscribe", "channel": ch.TRADES, "id": "BTC-USD"}).decode()
    for _ in range(2000):
        try:
            await flooder.ws.send_str(message)
        except ConnectionError:
            break
    assert await flooder.wait_closed() == ch.CLOSE_RATE_LIMITED
    other = await probes(simulator)
    await other.subscribe(ch.BLOCK_HEIGHT)
    assert (await other.next_type("subscribed"))["id"] == ch.BLOCK_HEIGHT_ID


async def test_flood_of_bad_channels_is_answered_and_survived(
    simulator: Simulator, probes: ProbeFactory
) -> None:
    probe = await probes(simulator)
    for n in range(2000):
        await probe.send({"type": "subscribe", "channel": f"v4_nope{n}"})
    await wait_for(lambda: len(probe.of_type("error")) == 2000, timeout=20)
    assert probe.of_type("error")[-1]["message"] == "Invalid channel: v4_nope1999"
    assert not probe.closed


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xfe\x00garbage", b'{"type":"subscribe","channel":', b"[" * 10000, b'{"type":"subscribe"}' * 3],
)
async def test_garbage_frames_do_not_hurt_the_server(
    simulator: Simulator, probes: ProbeFactory, payload: bytes
) -> None:
    probe = await probes(simulator)
    await probe.ws.send_bytes(payload)
    error = await probe.next_type("error")
    assert error["message"] in (ch.ERR_COULD_NOT_PARSE, ch.ERR_TYPE_REQUIRED)
    other = await probes(simulator)
    await other.subscribe(ch.BLOCK_HEIGHT)
    await other.next_type("subscribed")


async def test_oversized_frame_closes_only_that_connection(
    simulator_factory: SimulatorFactory, probes: ProbeFactory
) -> None:
    sim = await simulator_factory(max_message_bytes=64 * 1024)
    probe = await probes(sim)
    await probe.send("x" * (128 * 1024))
    assert await probe.wait_closed() == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    other = await probes(sim)
    await other.subscribe(ch.BLOCK_HEIGHT)
    await other.next_type("subscribed")


async def test_a_thousand_connections_opened_and_dropped(simulator: Simulator, probes: ProbeFactory) -> None:
    total, batch = 1000, 100
    rss_before = rss_bytes()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for start in range(0, total, batch):
            sockets = await asyncio.gather(*(session.ws_connect(simulator.ws_url) for _ in range(batch)))
            await asyncio.gather(*(ws.receive() for ws in sockets))  # `connected`
            for n, ws in enumerate(sockets):
                if (start + n) % 2:
                    await ws.send_str('{"type":"subscribe","channel":"v4_block_height"}')
            for n, ws in enumerate(sockets):
                transport = ws._response.connection.transport if ws._response.connection else None
                if n % 3 == 0 and transport is not None:
                    transport.abort()  # dropped without a close frame
                else:
                    await ws.close()
    await wait_for(lambda: not simulator.sessions, timeout=20, message="every connection cleaned up")
    assert simulator.stats.connections_opened == total
    assert sum(simulator.stats.closes.values()) == total
    assert simulator.hub.counts().get(ch.BLOCK_HEIGHT, 0) == 0, "no subscription outlives its connection"
    assert rss_bytes() - rss_before < 64 * 1024 * 1024
    probe = await probes(simulator)
    await probe.subscribe(ch.BLOCK_HEIGHT)
    await probe.next_type("channel_data")
