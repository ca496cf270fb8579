"""The loopback frame source: an aiohttp WebSocket server in its own process.

It speaks enough of the indexer protocol for a consumer to run unchanged: `connected`, a `subscribed`
frame with a snapshot for every subscribe, then the workload's pre-serialized `channel_data` /
`channel_batch_data` frames with correct per-connection message ids, either as fast as the socket takes
them (`frames` per connection) or paced at `rate` updates/s for `duration` seconds. Streaming starts once
every subscription of the workload has been asked for; the source then closes with 1000.

After the handshake, frames are written straight to the transport as pre-built WebSocket bytes (256
frames per write), with the transport's own flow control: the source costs about 0.1 µs per frame and
is never the bottleneck (the `source` row of the ingest table measures it with a null consumer).

Bench-only extension: a client message `{"type":"bench_scrape","url":U,"interval":S}` makes the source
scrape U every S seconds with Prometheus' headers while it streams to that client, and report each
scrape's timing. Scraping from this process keeps the scraper's own cost off the consumer's core.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from bench.procs import CONTEXT, stop_process
from bench.workload import FrameStream, Subscription, Workload, ws_header
from exporter.protocol import channels as ch

PROMETHEUS_ACCEPT: Final = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
WRITE_BUFFER_HIGH: Final = 1 << 20
PACE_TICK_S: Final = 0.0005


@dataclass(frozen=True)
class SourceConfig:
    workload: Workload
    #: Blast mode: data frames per connection (rounded up to whole chunks of 256).
    frames: int = 0
    #: Paced mode (when > 0): updates per second, for `duration` seconds.
    rate: float = 0.0
    duration: float = 0.0
    host: str = "127.0.0.1"


@dataclass
class StreamStats:
    frames: int = 0
    updates: int = 0
    bytes: int = 0
    seconds: float = 0.0
    source_cpu_seconds: float = 0.0
    complete: bool = False
    scrapes: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "updates": self.updates,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "source_cpu_seconds": self.source_cpu_seconds,
            "complete": self.complete,
            "scrapes": self.scrapes,
        }


class _RawWriter:
    """Writes pre-framed WebSocket bytes to the connection's transport, honouring its flow control."""

    def __init__(self, request: web.Request) -> None:
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("transport closed")
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        self._transport = transport
        self._protocol = request.protocol

    async def write(self, data: bytes) -> None:
        if self._transport.is_closing():
            raise ConnectionResetError("consumer went away")
        self._transport.write(data)
        # aiohttp's own WebSocket writer waits on the same helper; pause_writing() arms it.
        await self._protocol._drain_helper()

    async def write_frame(self, payload: bytes) -> None:
        await self.write(ws_header(len(payload)) + payload)


class SourceServer:
    def __init__(self, config: SourceConfig, report: Connection | None = None) -> None:
        self.config = config
        self._report = report
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0
        self.stats: list[StreamStats] = []

    @property
    def ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/v4/ws"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v4/ws", self._ws)
        app.router.add_get("/v4/perpetualMarkets", self._markets)
        app.router.add_get("/v4/height", self._height)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        self._session = aiohttp.ClientSession(auto_decompress=False)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _markets(self, request: web.Request) -> web.Response:
        return web.Response(
            body=orjson.dumps({"markets": self.config.workload.perpetual_markets}),
            content_type="application/json",
        )

    async def _height(self, request: web.Request) -> web.Response:
        return web.json_response({"height": "5", "time": "2026-03-04T19:21:07.512Z"})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        stats = StreamStats()
        scraper: asyncio.Task[None] | None = None
        stop_scraping = asyncio.Event()
        try:
            writer = _RawWriter(request)
            workload = self.config.workload
            wanted: dict[tuple[str, str | None], Subscription] = {s.key: s for s in workload.subscriptions}
            message_id = 0
            await writer.write_frame(workload.connected_frame())
            while wanted:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT and msg.type != aiohttp.WSMsgType.BINARY:
                    return ws
                request_body = orjson.loads(msg.data)
                if request_body.get("type") == "bench_scrape":
                    interval = float(request_body.get("interval", 1.0))
                    scraper = asyncio.create_task(
                        self._scrape(request_body["url"], interval, stats, stop_scraping)
                    )
                    continue
                if request_body.get("type") != "subscribe":
                    continue
                sub_id = request_body.get("id")
                channel = request_body.get("channel", "")
                key = (channel, ch.BLOCK_HEIGHT_ID if channel == ch.BLOCK_HEIGHT else sub_id)
                sub = wanted.pop(key, None)
                if sub is None:
                    continue
                message_id += 1
                await writer.write_frame(workload.subscribed_frame(sub, message_id))
            stream = FrameStream(workload, message_id + 1)
            cpu0, t0 = time.process_time(), time.perf_counter()
            if self.config.rate > 0:
                await self._paced(stream, writer)
            else:
                while stream.frames < self.config.frames:
                    await writer.write(stream.next_chunk())
            stats.seconds = time.perf_counter() - t0
            stats.source_cpu_seconds = time.process_time() - cpu0
            stats.frames, stats.updates, stats.bytes = stream.frames, stream.updates, stream.bytes
            stats.complete = True
            if scraper is not None:
                # Let a scrape in flight finish: cutting it off would make the exporter log a write error.
                stop_scraping.set()
                await asyncio.gather(scraper, return_exceptions=True)
                scraper = None
            await ws.close(code=1000)
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            if scraper is not None:
                scraper.cancel()
                await asyncio.gather(scraper, return_exceptions=True)
            self.stats.append(stats)
            if self._report is not None:
                self._report.send(("stream", stats.as_dict()))
        return ws

    async def _paced(self, stream: FrameStream, writer: _RawWriter) -> None:
        rate, duration = self.config.rate, self.config.duration
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < duration:
            owed = int(rate * elapsed) - stream.updates
            if owed > 0:
                await writer.write(b"".join(stream.next_frames(owed)))
            await asyncio.sleep(PACE_TICK_S)

    async def _scrape(self, url: str, interval: float, stats: StreamStats, stop: asyncio.Event) -> None:
        assert self._session is not None
        headers = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}
        next_at = time.monotonic() + interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_at - time.monotonic())):
                    await stop.wait()
            if stop.is_set():
                return
            next_at += interval
            started = time.monotonic()
            try:
                async with self._session.get(url, headers=headers) as resp:
                    body = await resp.read()
                    stats.scrapes.append(
                        {
                            "start": started,
                            "end": time.monotonic(),
                            "status": resp.status,
                            "wire_bytes": len(body),
                            "encoding": resp.headers.get("Content-Encoding", "identity"),
                            "content_type": resp.headers.get("Content-Type", ""),
                        }
                    )
            except aiohttp.ClientError as exc:
                stats.scrapes.append({"start": started, "end": time.monotonic(), "error": repr(exc)})


async def _serve(config: SourceConfig, conn: Connection) -> None:
    server = SourceServer(config, report=conn)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), stop.set)
    try:
        conn.send(("ready", server.port))
        await stop.wait()
    finally:
        loop.remove_reader(conn.fileno())
        await server.stop()


def _source_main(config: SourceConfig, conn: Connection) -> None:
    asyncio.run(_serve(config, conn))


class SourceProcess:
    """`with SourceProcess(config) as src:` a source in its own process; `src.ws_url` to connect."""

    def __init__(self, config: SourceConfig, start_timeout: float = 30.0) -> None:
        self.config = config
        self._start_timeout = start_timeout
        self._conn: Connection | None = None
        self._proc: Any = None
        self.port = 0

    @property
    def ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/v4/ws"

    @property
    def rest_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def __enter__(self) -> SourceProcess:
        parent, child = CONTEXT.Pipe()
        self._conn = parent
        self._proc = CONTEXT.Process(target=_source_main, args=(self.config, child), daemon=True)
        self._proc.start()
        child.close()
        try:
            kind, port = self._receive(self._start_timeout)
            if kind != "ready":
                raise RuntimeError(f"source sent {kind!r} before ready")
            self.port = int(port)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _receive(self, timeout: float) -> tuple[str, Any]:
        assert self._conn is not None
        if not self._conn.poll(timeout):
            raise TimeoutError(f"source process sent nothing within {timeout:.0f}s")
        kind, payload = self._conn.recv()
        return str(kind), payload

    def stream_stats(self, timeout: float = 30.0) -> Mapping[str, Any]:
        """Statistics of the next connection the source has finished streaming to."""
        kind, payload = self._receive(timeout)
        if kind != "stream":
            raise RuntimeError(f"expected stream stats from the source, got {kind!r}")
        result: Mapping[str, Any] = payload
        return result

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send(("stop", None))
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None
