"""Conformance with the newer socks behaviour of the protocol reference §6, exact texts and codes, through
aiohttp (the exporter's client), `websockets` (an independent one) and a raw socket where the frame bits
matter: the subscription-limit abuse rule (error, 4008 and its JSON reason, the socket gone within 1 s of
an ignored close, 429 with Retry-After in seconds and x-dydx-ratelimit-reason, the edge's JSON block),
the `penalty` fault, permessage-deflate per connection with its 1024-byte threshold, the 65,536-byte
inbound cap (1009) and the 5 s snapshot fetch timeout. About 12 s in all."""

from __future__ import annotations

import asyncio
import base64
import os
import time
import zlib
from dataclasses import dataclass, field

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from exporter.options import ConfigError
from exporter.protocol import channels as ch
from exporter.simulator import cli
from exporter.simulator.server import Simulator
from tests.fixtures.simulator import SimulatorFactory, control
from tests.simulator.conftest import ProbeFactory

pytestmark = pytest.mark.timeout(60)

ABUSE_REASON = (
    '{"message":"Subscription limit abuse","reason":"subscription-limit-abuse","retryAfterSeconds":30}'
)
ABUSE_TEXT = (
    "Repeatedly exceeded the per-connection subscription limit for v4_orderbook (limit=32). Unsubscribe "
    "before subscribing again, or open an additional connection. Closing this connection; reconnecting "
    "sooner than 30s will be refused."
)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def handshake(sim: Simulator, headers: dict[str, str] | None = None) -> Answer:
    """A plain GET upgrade request: the handshake's answer (a refusal's body)."""
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        **(headers or {}),
    }
    async with aiohttp.ClientSession() as session, session.get(sim.ws_url, headers=upgrade) as resp:
        body = await resp.read() if resp.status != 101 else b""
        return Answer(resp.status, dict(resp.headers), body)


async def overflow_orderbook(probe: object, sim: Simulator, extra: int) -> None:
    """Subscribe the orderbook of 32 markets (the cap), then `extra` more, each a distinct id (the
    per-id subscribe rate limit never applies)."""
    tickers = sim.source.tickers()
    assert len(tickers) >= 32 + extra
    for ticker in tickers[: 32 + extra]:
        await probe.subscribe(ch.ORDERBOOK, ticker)  # type: ignore[attr-defined]


async def test_abuse_drops_with_4008_then_refuses_the_address(
    simulator_factory: SimulatorFactory, probes: ProbeFactory
) -> None:
    sim = await simulator_factory(markets=40, subscription_limit_abuse=True)
    probe = await probes(sim)
    await overflow_orderbook(probe, sim, extra=6)
    assert await probe.wait_closed() == ch.CLOSE_SUBSCRIPTION_LIMIT_ABUSE
    assert probe.close_reason == ABUSE_REASON
    errors = [f["message"] for f in probe.of_type("error")]
    # Hits 1-5 are the plain cap error and the connection stays; the 6th within 10 s is abuse.
    assert errors == [ch.err_subscription_limit(ch.ORDERBOOK, 32)] * 5 + [ABUSE_TEXT]
    assert list(probe.of_type("error")[-1]) == ["type", "message", "connection_id", "message_id"]

    refused = await handshake(sim)
    assert refused.status == 429
    assert refused.headers["Retry-After"] in ("29", "30")  # seconds, not comlink's milliseconds
    assert refused.headers["x-dydx-ratelimit-reason"] == "subscription-limit-abuse"
    # Another address (cf-connecting-ip, as behind Cloudflare) is not penalized.
    other = await handshake(sim, {"cf-connecting-ip": "203.0.113.7"})
    assert other.status == 101
    with pytest.raises(InvalidStatus) as third_party:
        async with connect(sim.ws_url, proxy=None, open_timeout=5):
            pass
    assert third_party.value.response.status_code == 429
    assert third_party.value.response.headers["Retry-After"] in ("29", "30")


async def test_rule_off_keeps_the_connection_open(
    simulator_factory: SimulatorFactory, probes: ProbeFactory
) -> None:
    """The source default: cap hits are answered with the cap error and nothing else."""
    sim = await simulator_factory(markets=40)
    probe = await probes(sim)
    await overflow_orderbook(probe, sim, extra=8)
    await probe.next(lambda f: f.get("message") == ch.err_subscription_limit(ch.ORDERBOOK, 32))
    assert await asyncio.wait_for(handshake(sim), 5) and not probe.closed
    await asyncio.sleep(0.3)
    assert len(probe.of_type("error")) == 8 and not probe.closed


async def test_ignored_close_is_destroyed_after_one_second(simulator_factory: SimulatorFactory) -> None:
    """A client that never answers the 4008 close loses its socket within 1 s, not after the 5 s close
    timeout (aiohttp drops it as soon as the close frame is out; the 1 s timer is the backstop)."""
    sim = await simulator_factory(markets=40, subscription_limit_abuse=True, close_timeout=5.0)
    reader, writer, _ = await raw_connect(sim, None)
    try:
        for ticker in sim.source.tickers()[:38]:
            send_text(writer, orjson.dumps({"type": "subscribe", "channel": ch.ORDERBOOK, "id": ticker}))
        async with asyncio.timeout(10):
            while (frame := await read_frame(reader))[0] & 0x0F != 0x8:
                pass
        payload = frame[1]
        assert int.from_bytes(payload[:2], "big") == ch.CLOSE_SUBSCRIPTION_LIMIT_ABUSE
        assert payload[2:].decode() == ABUSE_REASON
        closed_at = time.monotonic()
        async with asyncio.timeout(4):
            assert await reader.read() == b"", "nothing after the close frame"
        assert time.monotonic() - closed_at < ch.ABUSE_DESTROY_AFTER_S + 0.5
    finally:
        writer.close()
        await writer.wait_closed()


async def test_penalty_fault_and_edge_block(simulator_factory: SimulatorFactory) -> None:
    """The fault forces a penalty on demand; 5 refusals in 60 s earn the edge's 300 s JSON block, which
    DELETE /control/faults lifts with the penalty."""
    sim = await simulator_factory(edge_block=True)
    async with connect(sim.ws_url, proxy=None, open_timeout=5, close_timeout=2) as ws:
        await asyncio.wait_for(ws.recv(), 5)
        answer = await control(sim, "POST", "/control/faults", {"kind": "penalty", "seconds": 7})
        assert answer == {"kind": "penalty", "connections": 1}
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                while True:
                    frame = orjson.loads(await ws.recv())
                    if frame["type"] == "error":
                        assert frame["message"].endswith("reconnecting sooner than 7s will be refused.")
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4008
        assert orjson.loads(closed.value.rcvd.reason) == {
            "message": "Subscription limit abuse",
            "reason": "subscription-limit-abuse",
            "retryAfterSeconds": 7,
        }
    for _ in range(ch.EDGE_BLOCK_REFUSALS):
        refused = await handshake(sim)
        assert refused.status == 429 and refused.headers["Retry-After"] in ("6", "7")
        assert refused.headers["x-dydx-ratelimit-reason"] == "subscription-limit-abuse"
    blocked = await handshake(sim)
    assert blocked.status == 429 and blocked.headers["Content-Type"].startswith("application/json")
    assert orjson.loads(blocked.body)["error"] == "subscription_limit_abuse"
    assert blocked.headers["Retry-After"] in ("299", "300")
    await control(sim, "DELETE", "/control/faults")
    assert (await handshake(sim)).status == 101
    with pytest.raises(Exception, match=r"penalty\.seconds must be > 0"):
        await control(sim, "POST", "/control/faults", {"kind": "penalty", "seconds": 0})


async def test_inbound_payload_cap(simulator: Simulator, probes: ProbeFactory) -> None:
    """65,536 bytes are read; one more closes with 1009."""
    fits = await probes(simulator)
    ping = b'{"type":"ping","pad":"'
    await fits.ws.send_bytes(ping + b"x" * (ch.WS_MAX_PAYLOAD_BYTES - len(ping) - 2) + b'"}')
    await fits.subscribe(ch.BLOCK_HEIGHT)
    await fits.next_type("subscribed")
    over = await probes(simulator)
    await over.ws.send_bytes(b" " * (ch.WS_MAX_PAYLOAD_BYTES + 1))
    assert await over.wait_closed() == ch.CLOSE_MESSAGE_TOO_BIG
    assert not fits.closed


async def test_snapshot_fetch_times_out_after_five_seconds(
    simulator_factory: SimulatorFactory, probes: ProbeFactory
) -> None:
    """A snapshot fetch that would take 6 s fails at 5 s (`lib/axios.ts`), with the subscribe's id."""
    sim = await simulator_factory(snapshot_delay=6.0)
    probe = await probes(sim)
    began = time.monotonic()
    await probe.subscribe(ch.TRADES, "BTC-USD")
    error = await probe.next_type("error", timeout=7.0)
    took = time.monotonic() - began
    assert ch.SNAPSHOT_FETCH_TIMEOUT_S <= took < 6.0, took
    assert error["message"] == "Internal error, could not fetch data for subscription: v4_trades."
    assert (error["channel"], error["id"], error["message_id"]) == (ch.TRADES, "BTC-USD", 1)
    assert not probe.of_type("subscribed") and not probe.closed


# --- permessage-deflate ------------------------------------------------------------------------------------


@dataclass
class RawFrames:
    """A WebSocket client on a bare socket, to see each frame's RSV1 (compressed) bit."""

    extensions: str
    frames: list[tuple[bool, bytes]] = field(default_factory=list)  # (compressed, message as sent)


async def raw_connect(
    sim: Simulator, offer: str | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """The upgrade on a bare socket, offering `offer` in Sec-WebSocket-Extensions → (reader, writer, the
    extensions the server accepted)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /v4/ws HTTP/1.1\r\nHost: 127.0.0.1:{sim.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        + (f"Sec-WebSocket-Extensions: {offer}\r\n" if offer else "")
        + "\r\n"
    )
    writer.write(request.encode())
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
    assert head.startswith("HTTP/1.1 101"), head
    name = "sec-websocket-extensions:"
    lines = head.split("\r\n")
    extensions = next((line[len(name) :].strip() for line in lines if line.lower().startswith(name)), "")
    return reader, writer, extensions


def send_text(writer: asyncio.StreamWriter, data: bytes) -> None:
    """One masked text frame (a client's), up to 125 bytes."""
    assert len(data) < 126
    mask = os.urandom(4)
    writer.write(bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(first header byte, payload) of the server's next frame."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return first, await reader.readexactly(length)


async def raw_session(sim: Simulator, offer: str | None, until_bytes: int = 1024) -> RawFrames:
    """Connect (offering `offer`), subscribe the BTC-USD orderbook and collect text frames until one of at
    least `until_bytes` arrived; messages are inflated when compressed."""
    reader, writer, extensions = await raw_connect(sim, offer)
    try:
        result = RawFrames(extensions)
        inflate = zlib.decompressobj(-15)
        send_text(writer, orjson.dumps({"type": "subscribe", "channel": ch.ORDERBOOK, "id": "BTC-USD"}))
        async with asyncio.timeout(5):
            while not any(len(m) >= until_bytes for _, m in result.frames):
                first, payload = await read_frame(reader)
                assert first & 0x80, "messages are not fragmented"
                if first & 0x0F != 0x1:
                    continue  # a ping
                compressed = bool(first & 0x40)
                if compressed:
                    payload = inflate.decompress(payload + b"\x00\x00\xff\xff")
                orjson.loads(payload)
                result.frames.append((compressed, payload))
        return result
    finally:
        writer.close()
        await writer.wait_closed()


async def test_compression_threshold_and_per_connection_share(simulator_factory: SimulatorFactory) -> None:
    full = await simulator_factory(compression_percent=100)
    offered = await raw_session(full, "permessage-deflate; client_max_window_bits")
    assert offered.extensions.startswith("permessage-deflate")
    assert offered.frames, "frames arrived"
    for compressed, message in offered.frames:
        assert compressed == (len(message) >= ch.WS_COMPRESSION_THRESHOLD_BYTES), len(message)
    notakeover = await raw_session(full, "permessage-deflate; server_no_context_takeover")
    assert "server_no_context_takeover" in notakeover.extensions
    assert any(compressed for compressed, _ in notakeover.frames), "still compressed, message by message"
    plain = await raw_session(full, None)
    assert plain.extensions == "" and not any(compressed for compressed, _ in plain.frames)

    off = await simulator_factory()
    assert (await raw_session(off, "permessage-deflate")).extensions == ""

    half = await simulator_factory(compression_percent=50)
    sessions = await asyncio.gather(*(raw_session(half, "permessage-deflate") for _ in range(16)))
    deflated = sum(1 for s in sessions if s.extensions)
    assert 0 < deflated < 16, "decided per connection"
    assert all(any(c for c, _ in s.frames) == bool(s.extensions) for s in sessions)

    # websockets offers permessage-deflate by default and reads the compressed snapshot.
    async with connect(full.ws_url, proxy=None, open_timeout=5, close_timeout=2) as ws:
        assert ws.response is not None
        assert ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        await asyncio.wait_for(ws.recv(), 5)
        await ws.send(orjson.dumps({"type": "subscribe", "channel": ch.MARKETS}).decode())
        snapshot = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        assert snapshot["type"] == "subscribed" and len(snapshot["contents"]["markets"]) == 5


async def test_third_party_client_sees_4008_1009_and_the_fetch_timeout(
    simulator_factory: SimulatorFactory,
) -> None:
    """The same through `websockets`, the three side by side: the abuse drop's error and 4008 with its
    exact reason, 1009 for a 65,537-byte frame, the snapshot error at 5 s."""
    abusive = await simulator_factory(markets=40, subscription_limit_abuse=True)
    capped = await simulator_factory()
    slow = await simulator_factory(snapshot_delay=6.0)

    async def frames_until_closed(sim: Simulator, *sends: str | bytes) -> tuple[list[str], int, str]:
        seen: list[str] = []
        async with connect(sim.ws_url, proxy=None, open_timeout=5, close_timeout=2, max_size=None) as ws:
            for message in sends:
                await ws.send(message)
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(8):
                    while True:
                        seen.append(str(await ws.recv()))
        assert closed.value.rcvd is not None, "a close frame, not a drop"
        return seen, closed.value.rcvd.code, closed.value.rcvd.reason

    async def fetch_error() -> dict[str, object]:
        async with connect(slow.ws_url, proxy=None, open_timeout=5, close_timeout=2) as ws:
            await ws.send(orjson.dumps({"type": "subscribe", "channel": ch.TRADES, "id": "ETH-USD"}).decode())
            async with asyncio.timeout(8):
                while (frame := orjson.loads(await ws.recv()))["type"] != "error":
                    pass
        return frame  # type: ignore[no-any-return]

    subscribes = [
        orjson.dumps({"type": "subscribe", "channel": ch.ORDERBOOK, "id": t}).decode()
        for t in abusive.source.tickers()[:38]
    ]
    (abuse_frames, abuse_code, abuse_reason), (_, cap_code, _), error = await asyncio.gather(
        frames_until_closed(abusive, *subscribes),
        frames_until_closed(capped, b" " * (ch.WS_MAX_PAYLOAD_BYTES + 1)),
        fetch_error(),
    )
    assert (abuse_code, abuse_reason) == (ch.CLOSE_SUBSCRIPTION_LIMIT_ABUSE, ABUSE_REASON)
    assert orjson.loads(abuse_frames[-1])["message"] == ABUSE_TEXT
    assert cap_code == ch.CLOSE_MESSAGE_TOO_BIG
    assert error["message"] == ch.err_could_not_fetch(ch.TRADES) and error["id"] == "ETH-USD"


def test_flags() -> None:
    args = cli.parse_args(
        ["--ws.compression-percent", "50", "--ws.subscription-limit-abuse", "--ws.edge-block"]
    )
    assert args.config.compression_percent == 50
    assert args.config.subscription_limit_abuse and args.config.edge_block
    defaults = cli.parse_args([]).config
    assert defaults.compression_percent == 0 and not defaults.subscription_limit_abuse
    assert defaults.max_message_bytes == ch.WS_MAX_PAYLOAD_BYTES
    with pytest.raises(ConfigError, match=r"ws\.compression-percent"):
        cli.parse_args(["--ws.compression-percent", "101"])
