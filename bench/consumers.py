"""The consumers under test, each run in its own process against the same loopback source.

- `bare`: aiohttp's WebSocket client + orjson, decode and count: the practical limit of the exporter's
  client library.
- `naive`: what people write first: the `websockets` client, stdlib `json`, a dict book whose best prices
  are recomputed with max()/min(), and prometheus_client `.labels()` on every update.
- `pipeline`: the exporter's pipeline: an aiohttp receive loop, the same code as the hot path of
  `exporter.feed.connection.Link._read`, → `Processor.handle` (decode, validate, message ids, books, trades,
  every metric through the real `Collector`). The latency, footprint and growth scenarios use this one,
  with optional per-frame timing, a loop-lag ticker, a slow-callback recorder and a /metrics server.
- `exporter`: the same pipeline behind the exporter's own supervised `Link` (connect, subscribe, read
  loop, pings, close).
- `null`: reads and discards bytes: what the source can deliver.

Timing starts at the first data frame (after `connected` and every `subscribed`), so snapshots are not in
the figures, and ends when the source closes. CPU is this process' `time.process_time()` (user + system,
receive included).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import orjson

from bench.procs import rss_bytes
from bench.workload import CANDLE_RESOLUTION, Workload, expected_books
from exporter.feed.connection import READ_CHECK_BYTES, READ_SLICE_S
from exporter.loop import let_io_in
from exporter.protocol import channels as ch

LINK: Final = "conn-0"
CONSUMERS: Final = ("null", "bare", "naive", "pipeline", "exporter")
#: The pipeline's options, parsed as the CLI parses a user's: channel names built at run time, never the
#: interned constants (a hot path that compared names by identity once passed this benchmark while the
#: shipped exporter rejected every one-level book update).
PIPELINE_ARGV: Final = (
    f"--channels={ch.MARKETS},{ch.BLOCK_HEIGHT},{ch.ORDERBOOK},{ch.TRADES}",
    f"--candles.resolutions={CANDLE_RESOLUTION}",
)
LAG_TICK_S: Final = 0.0005
LAG_RECORD_ABOVE_S: Final = 0.001
SLOW_CALLBACK_S: Final = 0.001
MAX_SLOW_CALLBACKS: Final = 2_000
NORMAL_CLOSE_FRAME: Final = b"\x88\x02\x03\xe8"


@dataclass(frozen=True)
class ConsumerSpec:
    url: str
    workload: Workload
    #: Record the time from receipt to handled of every data frame (pipeline only).
    record_latency: bool = False
    #: Serve /metrics and have the source scrape it every `scrape_interval` seconds (pipeline only).
    scrape_interval: float = 0.0
    #: Run a ticker task that measures how late the event loop wakes it.
    measure_loop_lag: bool = False
    #: Data-frame counts at which to sample RSS.
    rss_marks: tuple[int, ...] = ()
    #: Data frames the source will send (the `exporter` consumer stops its link after the last one).
    expect_frames: int = 0


@dataclass
class RunResult:
    consumer: str
    frames: int = 0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    rss_start: int = 0
    rss_end: int = 0
    rss_marks: dict[int, int] = field(default_factory=dict)
    latency_ns: list[int] = field(default_factory=list)
    lag_events: list[tuple[float, float, float]] = field(default_factory=list)
    lag_max_s: float = 0.0
    lag_ticks: int = 0
    metrics_updates: float | None = None
    #: How the pipeline's state differs from what the source sent (invalid frames, books): None for the
    #: consumers that hold no exporter state; the benchmark's "counts ok" requires it empty.
    pipeline_problems: list[str] | None = None
    data_started: float = 0.0
    #: Set when the source closes: the post-processing after it (e.g. turning 200k latency samples into a
    #: list, ≈ 5 ms) is the benchmark's own work, not a stall of the exporter, and is not recorded.
    data_ended: float = 0.0
    #: Event-loop callbacks that held the loop over SLOW_CALLBACK_S: (monotonic end, wall s, CPU s, name).
    slow_callbacks: list[tuple[float, float, float, str]] = field(default_factory=list)
    #: Garbage-collector pauses in the streaming phase: generation → [count, total ms, max ms].
    gc_pauses: dict[int, list[float]] = field(default_factory=dict)
    metrics_url: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Meter:
    """Counts data frames, starts the clocks at the first one, samples RSS at the marks."""

    def __init__(self, result: RunResult, preamble: int, rss_marks: Sequence[int]) -> None:
        self.result = result
        self.preamble = preamble
        self._seen = 0
        self._marks = sorted(rss_marks)
        self._t0 = 0.0
        self._cpu0 = 0.0

    def frame(self) -> None:
        self._seen += 1
        data_frames = self._seen - self.preamble
        if data_frames == 1:
            self._t0, self._cpu0 = time.perf_counter(), time.process_time()
            self.result.data_started = time.monotonic()
            self.result.rss_start = rss_bytes()
        if self._marks and data_frames == self._marks[0]:
            self.result.rss_marks[self._marks.pop(0)] = rss_bytes()

    def finish(self) -> None:
        r = self.result
        r.frames = max(0, self._seen - self.preamble)
        if r.frames:
            r.wall_seconds = time.perf_counter() - self._t0
            r.cpu_seconds = time.process_time() - self._cpu0
        r.rss_end = rss_bytes()


def subscribe_messages(workload: Workload) -> list[bytes]:
    return [orjson.dumps(s.request(workload.batched)) for s in workload.subscriptions]


async def _loop_lag(result: RunResult) -> None:
    """Wake every LAG_TICK_S and record how late the loop was, and how much of that lateness the loop's
    own thread spent on the CPU (thread_time): a stall our code caused is on-CPU, a neighbour process
    taking the core is not. time.monotonic() is CLOCK_MONOTONIC, so these times compare with the scrape
    times the source records."""
    expected = time.monotonic() + LAG_TICK_S
    cpu_before = time.thread_time()
    while True:
        await asyncio.sleep(LAG_TICK_S)
        now, cpu = time.monotonic(), time.thread_time()
        lag = now - expected
        # Snapshots are applied before the first data frame: only the streaming phase is measured.
        if result.data_started and not result.data_ended:
            result.lag_ticks += 1
            if lag > result.lag_max_s:
                result.lag_max_s = lag
            if lag > LAG_RECORD_ABOVE_S:
                # On-CPU part of the stall: the loop thread's CPU time since the previous tick.
                result.lag_events.append((now, lag, cpu - cpu_before))
        expected = now + LAG_TICK_S
        cpu_before = cpu


def _callback_name(handle: asyncio.Handle) -> str:
    """A readable name for what a loop callback runs: the coroutine of a task step, else the function."""
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        code = getattr(coro, "cr_code", None)
        return f"task {getattr(code, 'co_qualname', repr(coro))}"
    return str(getattr(callback, "__qualname__", repr(callback)))[:120]


class _SlowCallbacks:
    """Times every event-loop callback (asyncio.Handle._run) and keeps those that held the loop longer
    than SLOW_CALLBACK_S, with the loop thread's CPU time over the same stretch: which code stalled the
    loop, and for how long. Costs two clock reads per callback."""

    def __init__(self, result: RunResult) -> None:
        self._result = result
        self._original: Callable[[asyncio.Handle], None] | None = None

    def install(self) -> None:
        original = asyncio.Handle._run
        self._original = original
        result = self._result
        clock, cpu_clock, monotonic = time.perf_counter, time.thread_time, time.monotonic

        def timed_run(handle: asyncio.Handle) -> None:
            started, cpu_started = clock(), cpu_clock()
            original(handle)
            took = clock() - started
            if (
                took > SLOW_CALLBACK_S
                and result.data_started
                and not result.data_ended
                and len(result.slow_callbacks) < MAX_SLOW_CALLBACKS
            ):
                cpu = cpu_clock() - cpu_started
                result.slow_callbacks.append((monotonic(), took, cpu, _callback_name(handle)))

        asyncio.Handle._run = timed_run  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        if self._original is not None:
            asyncio.Handle._run = self._original  # type: ignore[method-assign,assignment]
            self._original = None


class _GcPauses:
    """Times every garbage collection (gc.callbacks) once data flows: a gen-2 pass over a large heap is a
    loop stall of its own that no scrape caused."""

    def __init__(self, result: RunResult) -> None:
        self._result = result
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        if not self._result.data_started or self._result.data_ended:
            return
        ms = (time.perf_counter() - self._started) * 1e3
        entry = self._result.gc_pauses.setdefault(info["generation"], [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += ms
        entry[2] = max(entry[2], ms)


# -- bare ----------------------------------------------------------------------------------------------


async def _bare(spec: ConsumerSpec) -> RunResult:
    result = RunResult("bare")
    meter = _Meter(result, 1 + len(spec.workload.subscriptions), spec.rss_marks)
    loads = orjson.loads
    text = aiohttp.WSMsgType.TEXT
    updates = 0
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(spec.url, max_msg_size=0, decode_text=False) as ws,
    ):
        for raw in subscribe_messages(spec.workload):
            await ws.send_bytes(raw)
        while True:
            msg = await ws.receive()
            if msg.type is not text:
                break
            frame = loads(msg.data)
            kind = frame["type"]
            if kind == "channel_data":
                updates += 1
            elif kind == "channel_batch_data":
                updates += len(frame["contents"])
            meter.frame()
    meter.finish()
    result.metrics_updates = float(updates)
    return result


# -- null --------------------------------------------------------------------------------------------


async def _null(spec: ConsumerSpec) -> RunResult:
    """Reads and discards bytes after a hand-made handshake: measures what the source can deliver."""
    import base64
    import os
    import struct
    from urllib.parse import urlsplit

    result = RunResult("null")
    parts = urlsplit(spec.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await reader.readuntil(b"\r\n\r\n")
        for raw in subscribe_messages(spec.workload):
            # Client frames must be masked; an all-zero mask key leaves the payload as it is.
            header = (
                struct.pack("!BB", 0x81, 0x80 | 126) + struct.pack("!H", len(raw))
                if len(raw) >= 126
                else (struct.pack("!BB", 0x81, 0x80 | len(raw)))
            )
            writer.write(header + b"\0\0\0\0" + raw)
        received = 0
        t0, cpu0 = time.perf_counter(), time.process_time()
        while chunk := await reader.read(1 << 20):
            received += len(chunk)
            # The source ends with a bare close frame (1000); data frames end in "}".
            if chunk.endswith(NORMAL_CLOSE_FRAME):
                writer.write(struct.pack("!BB", 0x88, 0x82) + b"\0\0\0\0" + struct.pack("!H", 1000))
                break
        result.wall_seconds = time.perf_counter() - t0
        result.cpu_seconds = time.process_time() - cpu0
        result.metrics_updates = float(received)
    finally:
        writer.close()
    return result


# -- naive ---------------------------------------------------------------------------------------------


class _NaiveConsumer:
    """The consumer of the kind people write first. Deliberately ordinary, not deliberately slow."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = CollectorRegistry()
        self.registry = r
        self.messages = Counter("naive_ws_messages_total", "Frames", ["channel", "type"], registry=r)
        self.updates = Counter("naive_updates_total", "Updates", ["channel"], registry=r)
        self.trades = Counter("naive_trades_total", "Trades", ["market", "side"], registry=r)
        self.volume = Counter("naive_trade_volume_total", "Volume", ["market", "side"], registry=r)
        self.notional = Counter("naive_trade_notional_total", "Notional", ["market", "side"], registry=r)
        self.last_trade = Gauge("naive_last_trade_price", "Last trade", ["market"], registry=r)
        self.best = Gauge("naive_orderbook_best_price", "Best", ["market", "side"], registry=r)
        self.levels = Gauge("naive_orderbook_levels", "Levels", ["market", "side"], registry=r)
        self.oracle = Gauge("naive_oracle_price", "Oracle", ["market"], registry=r)
        self.candle_close = Gauge("naive_candle_close", "Candle close", ["market"], registry=r)
        self.height = Gauge("naive_block_height", "Height", registry=r)
        self.processing = Histogram("naive_processing_seconds", "Processing", ["channel"], registry=r)
        self.books: dict[str, dict[str, dict[float, float]]] = {}

    def handle(self, raw: str | bytes) -> None:
        started = time.perf_counter()
        msg = json.loads(raw)
        kind = msg["type"]
        channel = msg.get("channel", "")
        self.messages.labels(channel, kind).inc()
        if kind == "subscribed" and channel == ch.ORDERBOOK:
            book = self.books[msg["id"]] = {"bids": {}, "asks": {}}
            for side in ("bids", "asks"):
                for level in msg["contents"].get(side, []):
                    book[side][float(level["price"])] = float(level["size"])
        elif kind == "channel_data":
            self.apply(channel, msg.get("id"), msg["contents"])
        elif kind == "channel_batch_data":
            for contents in msg["contents"]:
                self.apply(channel, msg.get("id"), contents)
        self.processing.labels(channel).observe(time.perf_counter() - started)

    def apply(self, channel: str, sub_id: str | None, contents: dict[str, Any]) -> None:
        self.updates.labels(channel).inc()
        if channel == ch.ORDERBOOK and sub_id is not None:
            book = self.books.setdefault(sub_id, {"bids": {}, "asks": {}})
            for side in ("bids", "asks"):
                for price, size in contents.get(side, []):
                    levels = book[side]
                    if float(size) == 0:
                        levels.pop(float(price), None)
                    else:
                        levels[float(price)] = float(size)
                    if levels:
                        best = max(levels) if side == "bids" else min(levels)
                        self.best.labels(sub_id, side).set(best)
                    self.levels.labels(sub_id, side).set(len(levels))
        elif channel == ch.TRADES and sub_id is not None:
            for trade in contents["trades"]:
                size, price = float(trade["size"]), float(trade["price"])
                side = trade["side"]
                self.trades.labels(sub_id, side).inc()
                self.volume.labels(sub_id, side).inc(size)
                self.notional.labels(sub_id, side).inc(size * price)
                self.last_trade.labels(sub_id).set(price)
        elif channel == ch.MARKETS:
            for ticker, oracle in contents.get("oraclePrices", {}).items():
                self.oracle.labels(ticker).set(float(oracle["oraclePrice"]))
        elif channel == ch.CANDLES:
            self.candle_close.labels(contents["ticker"]).set(float(contents["close"]))
        elif channel == ch.BLOCK_HEIGHT:
            self.height.set(float(contents["blockHeight"]))


async def _naive(spec: ConsumerSpec) -> RunResult:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    result = RunResult("naive")
    meter = _Meter(result, 1 + len(spec.workload.subscriptions), spec.rss_marks)
    consumer = _NaiveConsumer()
    async with connect(spec.url, max_size=None, compression=None, ping_interval=None) as ws:
        for raw in subscribe_messages(spec.workload):
            await ws.send(raw.decode())
        try:
            async for message in ws:
                consumer.handle(message)
                meter.frame()
        except ConnectionClosed:
            pass
    meter.finish()
    result.metrics_updates = sum(
        s.value
        for metric in consumer.registry.collect()
        if metric.name == "naive_updates"
        for s in metric.samples
        if s.name == "naive_updates_total"
    )
    return result


# -- pipeline ------------------------------------------------------------------------------------------


def build_pipeline(workload: Workload) -> tuple[Any, Any]:
    """The exporter's Router and Collector, loaded with the workload's markets, link `conn-0` open."""
    from exporter.config import Settings
    from exporter.metrics.collector import Collector
    from exporter.state.router import Router

    settings = Settings.from_sources(PIPELINE_ARGV, {})
    collector = Collector(version="bench", channels=settings.channels)
    router = Router(collector)
    router.universe.load(workload.perpetual_markets)
    router.link_opened(LINK)
    return router, collector


def _samples(registry: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a registry, read the way a scrape would: (name, sorted labels) → value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in registry.collect()
        for sample in metric.samples
    }


def updates_counted(registry: Any) -> float:
    """sum(dydx_updates_total) read from a registry, the way a scrape would."""
    return sum(v for (name, _), v in _samples(registry).items() if name == "dydx_updates_total")


def pipeline_problems(registry: Any, workload: Workload, data_frames: int, limit: int = 10) -> list[str]:
    """What the pipeline exports that differs from what the source sent after `data_frames` data frames:
    any invalid frame, and per market the book's levels per side and best bid and ask."""
    samples = _samples(registry)
    problems = []
    invalid = sum(v for (name, _), v in samples.items() if name == "dydx_messages_invalid_total")
    if invalid:
        problems.append(f"dydx_messages_invalid_total {invalid:.0f}")
    for ticker, (bids, asks) in expected_books(workload, data_frames).items():
        for side, book, best in (("bid", bids, max), ("ask", asks, min)):
            labels = (("market", ticker), ("side", side))
            levels = samples.get(("dydx_orderbook_levels", labels))
            if levels != len(book):
                problems.append(f"{ticker} {side} levels: {levels} != {len(book)} sent")
            price = samples.get(("dydx_orderbook_best_price", labels))
            want = best(map(float, book)) if book else None
            if price != want:
                problems.append(f"{ticker} best {side}: {price} != {want} sent")
    return problems[:limit]


async def _pipeline(spec: ConsumerSpec) -> RunResult:
    result = RunResult("pipeline")
    processor, collector = build_pipeline(spec.workload)
    meter = _Meter(result, 1 + len(spec.workload.subscriptions), spec.rss_marks)
    tasks: list[asyncio.Task[None]] = []
    web_server: Any = None
    gc_pauses = _GcPauses(result)
    slow_callbacks = _SlowCallbacks(result)
    if spec.measure_loop_lag:
        tasks.append(asyncio.create_task(_loop_lag(result)))
        gc.callbacks.append(gc_pauses)
        slow_callbacks.install()
    try:
        if spec.scrape_interval > 0:
            from exporter.web.app import WebServer

            web_server = WebServer("127.0.0.1", 0, "/metrics", collector.registry, [processor])
            await web_server.start()
            result.metrics_url = f"http://127.0.0.1:{web_server.port}/metrics"
        async with (
            aiohttp.ClientSession() as session,
            # As the exporter's Link: frames as bytes, no UTF-8 decode before orjson.
            session.ws_connect(spec.url, max_msg_size=0, decode_text=False) as ws,
        ):
            if result.metrics_url:
                control = {
                    "type": "bench_scrape",
                    "url": result.metrics_url,
                    "interval": spec.scrape_interval,
                }
                await ws.send_bytes(orjson.dumps(control))
            for raw in subscribe_messages(spec.workload):
                await ws.send_bytes(raw)
            if spec.record_latency:
                await _pipeline_timed(ws, processor.handle, meter, result)
            else:
                await _pipeline_plain(ws, processor.handle, meter)
        meter.finish()
    finally:
        slow_callbacks.uninstall()
        if gc_pauses in gc.callbacks:
            gc.callbacks.remove(gc_pauses)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if web_server is not None:
            await web_server.stop()
    result.metrics_updates = updates_counted(collector.registry)
    result.pipeline_problems = pipeline_problems(collector.registry, spec.workload, result.frames)
    return result


async def _pipeline_plain(
    ws: aiohttp.ClientWebSocketResponse[bool], handle: Callable[..., Any], meter: _Meter
) -> None:
    # Link._read's hot path, its yield after READ_SLICE_S of work included.
    text = aiohttp.WSMsgType.TEXT
    now = time.time
    slice_start = now()
    unchecked = READ_CHECK_BYTES
    while True:
        msg = await ws.receive()
        if msg.type is not text:
            break
        data = msg.data
        handle(LINK, data, now())
        meter.frame()
        unchecked -= len(data)
        if unchecked <= 0:
            unchecked = READ_CHECK_BYTES
            if now() - slice_start > READ_SLICE_S:
                await let_io_in()
                slice_start = now()


async def _pipeline_timed(
    ws: aiohttp.ClientWebSocketResponse[bool], handle: Callable[..., Any], meter: _Meter, result: RunResult
) -> None:
    text = aiohttp.WSMsgType.TEXT
    now = time.time
    clock = time.perf_counter_ns
    samples = array("q")
    slice_start = now()
    unchecked = READ_CHECK_BYTES
    while True:
        msg = await ws.receive()
        received = clock()
        if msg.type is not text:
            result.data_ended = time.monotonic()
            break
        data = msg.data
        handle(LINK, data, now())
        samples.append(clock() - received)
        meter.frame()
        unchecked -= len(data)
        if unchecked <= 0:
            unchecked = READ_CHECK_BYTES
            if now() - slice_start > READ_SLICE_S:
                await let_io_in()
                slice_start = now()
    # Drop the preamble (connected + subscribed with snapshots): they are not data frames.
    result.latency_ns = samples[meter.preamble :].tolist()


# -- exporter: the pipeline behind the exporter's own supervised link ----------------------------------


class _MeteredSink:
    """The Processor, behind a pass-through that counts frames for the meter (one extra call per frame)."""

    def __init__(self, processor: Any, meter: _Meter, expect: int, done: asyncio.Event) -> None:
        self._processor = processor
        self._handle = processor.handle
        self._meter = meter
        self._remaining = expect + meter.preamble
        self._done = done

    def handle(self, link: str, raw: str | bytes, received_at: float) -> Any:
        control = self._handle(link, raw, received_at)
        self._meter.frame()
        self._remaining -= 1
        if not self._remaining:
            self._meter.finish()
            self._done.set()
        return control

    def __getattr__(self, name: str) -> Any:
        return getattr(self._processor, name)


class _NoPool:
    def markets_changed(self, change: Any) -> None:
        pass

    def subscriptions_changed(self) -> None:
        pass

    def limit_reached(self, link: Any, key: Any) -> None:
        pass


async def _exporter(spec: ConsumerSpec) -> RunResult:
    """The pipeline fed by `exporter.feed.connection.Link`: the exporter's own connect, subscribe, read
    loop (decode_text=False, control handling, pings) and close, on one connection."""
    from exporter.config import FeedSettings
    from exporter.feed.backoff import Pacer
    from exporter.feed.connection import Link, LinkDeps, sub_key

    result = RunResult("exporter")
    processor, collector = build_pipeline(spec.workload)
    meter = _Meter(result, 1 + len(spec.workload.subscriptions), spec.rss_marks)
    done = asyncio.Event()
    sink = _MeteredSink(processor, meter, spec.expect_frames, done)
    # No subscribe pacing (the source has no rate limit) and no reconnect before the link is stopped.
    settings = FeedSettings(
        ws_url=spec.url, rest_url="", batched=spec.workload.batched, backoff_initial=60.0, subscribe_rate=1e6
    )
    async with aiohttp.ClientSession() as session:
        link = Link(LINK, LinkDeps(settings, session, sink, collector, Pacer(1e6, burst=10_000), _NoPool()))
        link.want(sub_key(s.channel, s.sub_id) for s in spec.workload.subscriptions)
        await link.start()
        try:
            await done.wait()
            # Before the link stops: a closed link invalidates its books, as in the exporter.
            result.pipeline_problems = pipeline_problems(collector.registry, spec.workload, result.frames)
        finally:
            await link.stop()
    result.metrics_updates = updates_counted(collector.registry)
    return result


_RUNNERS: Final[dict[str, Callable[[ConsumerSpec], Any]]] = {
    "null": _null,
    "bare": _bare,
    "naive": _naive,
    "pipeline": _pipeline,
    "exporter": _exporter,
}


def consume(kind: str, spec: ConsumerSpec) -> dict[str, Any]:
    """Entry point of a consumer process: run `kind` against the source at spec.url, return its figures."""
    from exporter.logs import configure

    # The pipeline logs one line per market change: keep the benchmark's output to its tables.
    configure(level="warn", fmt="json")
    gc.collect()
    result: RunResult = asyncio.run(_RUNNERS[kind](spec))
    return result.as_dict()
