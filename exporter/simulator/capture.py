"""Record and replay: raw indexer frames captured to a compressed file, and served again by the simulator.

Format (gzip-compressed JSON lines, one JSON object per line):

    {"format":"dydx-capture","version":1,"source":"wss://…/v4/ws","started_at":1772652067.51,…}  header
    {"t":1772652067.612,"link":"conn-0","raw":"{\"type\":\"connected\",…}"}                       a frame
    {"t":1772652067.600,"link":"conn-0","event":"opened"}                                          link event
    {"end":1772652127.9,"frames":48211}                                                            trailer

`t` is the wall-clock receive time (epoch seconds), `link` the recorder's connection name, `raw` the frame's
text byte for byte (`raw_b64` instead for a frame that is not UTF-8). The trailer is missing when the
recorder was killed; the reader then stops at the last complete line.

Record: `dydx-exporter record --output FILE …` drives the feed's own `Pool` (and `Discovery` for
`--markets all`) with a `RecordingSink`, so it subscribes exactly as the exporter does: unbatched, at most 32
subscriptions per channel per connection, paced, reconnecting with backoff.

Replay: `ReplaySource` is an `EventSource` (see source.py) that re-publishes the recorded channel_data and
channel_batch_data contents through the simulator's Publisher at the recorded pace times speed, so every
subscriber gets fresh connection ids and its own message ids. Snapshots and REST answers come from the
recorded `subscribed` snapshots brought up to date with the updates replayed so far.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import contextlib
import gzip
import sys
import time
from collections import deque
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson

from exporter import __version__, logs
from exporter.config import (
    DEFAULT_CHANNELS,
    NETWORKS,
    SUPPORTED_CHANNELS,
    FeedSettings,
    Settings,
    parse_duration,
    parse_list,
    parse_markets,
)
from exporter.feed.discovery import Discovery
from exporter.feed.pool import Pool
from exporter.feed.sink import Connected, Control, ServerError, Subscribed, Unsubscribed
from exporter.lifecycle import StopSignals
from exporter.protocol import channels as ch
from exporter.simulator import formats
from exporter.simulator.source import Publisher, valid_market_subscription

log = logs.get_logger(__name__)


FORMAT: Final = "dydx-capture"
FORMAT_VERSION: Final = 1
#: Seconds between two writes of buffered lines to the compressor (and on to disk).
FLUSH_INTERVAL_S: Final = 0.5
#: Buffered bytes that trigger an early write.
FLUSH_BYTES: Final = 1 << 20
#: Seconds between two full flushes of the compressor: a recorder killed without a chance to close the
#: file loses at most this much (a full flush costs a little compression, so not at every write).
SYNC_INTERVAL_S: Final = 5.0
#: Levels per side of an orderbook snapshot, as comlink serves it.
BOOK_LEVELS: Final = ch.REST_ORDERBOOK_MAX_LEVELS
HISTORY_ROWS: Final = 1000

_DATA_PREFIXES: Final = (b'{"type":"channel_data"', b'{"type":"channel_batch_data"')
_CHANNEL_KEY: Final = b'"channel":"'


class CaptureError(ValueError):
    """The file is not a capture this version can read; the message says why."""


# ---------------------------------------------------------------------------------------------------------
# The file format
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameRecord:
    t: float
    link: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class LinkEvent:
    t: float
    link: str
    event: str  # "opened" | "closed"


@dataclass(frozen=True, slots=True)
class Trailer:
    end: float
    frames: int


Record = FrameRecord | LinkEvent | Trailer


class CaptureWriter:
    """Appends lines to a gzip file. `frame`/`event` only buffer (cheap, on the hot path); a background task
    compresses and writes the buffer in a worker thread every FLUSH_INTERVAL_S, so the event loop never
    blocks on zlib or the disk, and fully flushes the compressor every SYNC_INTERVAL_S, so what is on disk
    stays readable if the process is killed. `close` writes what is left and the trailer."""

    def __init__(self, path: Path, header: Mapping[str, Any]) -> None:
        self.path = path
        self._header = dict(header)
        self._gz: gzip.GzipFile | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._synced_at = 0.0
        self.frames = 0
        self.bytes_in = 0

    async def open(self) -> None:
        """Create the file (raises OSError) and write the header."""
        self._gz = await asyncio.to_thread(gzip.GzipFile, self.path, "wb", 6)
        self._synced_at = time.monotonic()
        self._pending.append(orjson.dumps(self._header) + b"\n")
        await self.flush(sync=True)
        self._task = asyncio.get_running_loop().create_task(self._flush_loop(), name="capture-flush")

    def frame(self, t: float, link: str, raw: str | bytes) -> None:
        data = raw.encode() if isinstance(raw, str) else raw
        try:
            line = orjson.dumps({"t": t, "link": link, "raw": data.decode()})
        except UnicodeDecodeError:
            line = orjson.dumps({"t": t, "link": link, "raw_b64": base64.b64encode(data).decode()})
        self.frames += 1
        self.bytes_in += len(data)
        self._append(line)

    def event(self, t: float, link: str, event: str) -> None:
        self._append(orjson.dumps({"t": t, "link": link, "event": event}))

    def _append(self, line: bytes) -> None:
        self._pending.append(line + b"\n")
        self._pending_bytes += len(line) + 1
        if self._pending_bytes >= FLUSH_BYTES:
            self._wake.set()

    async def _flush_loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_INTERVAL_S):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush(sync=time.monotonic() - self._synced_at >= SYNC_INTERVAL_S)

    async def flush(self, sync: bool = False) -> None:
        """Write the buffered lines; with `sync`, also flush the compressor so the file is readable so far.
        The write runs in a worker thread and is never abandoned half-way (cancelling the caller waits for
        it), so two writes never overlap."""
        async with self._lock:
            gz = self._gz
            if gz is None or (not self._pending and not sync):
                return
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            if sync:
                self._synced_at = time.monotonic()
            write = asyncio.ensure_future(asyncio.to_thread(self._write, gz, data, sync))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                await write
                raise

    @staticmethod
    def _write(gz: gzip.GzipFile, data: bytes, sync: bool) -> None:
        if data:
            gz.write(data)
        if sync:
            gz.flush()  # zlib Z_SYNC_FLUSH, then the file object's own flush

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._gz is None:
            return
        self._append(orjson.dumps({"end": time.time(), "frames": self.frames}))
        await self.flush()
        gz, self._gz = self._gz, None
        await asyncio.to_thread(gz.close)


def read_header(path: str | Path) -> dict[str, Any]:
    """The header of a capture; raises CaptureError if it is not one, OSError if it cannot be read."""
    with gzip.open(path, "rb") as f:
        try:
            first = f.readline()
        except (OSError, EOFError) as exc:
            raise CaptureError(f"{path}: not a gzip-compressed capture ({exc})") from None
    try:
        header = orjson.loads(first)
    except orjson.JSONDecodeError:
        raise CaptureError(f"{path}: the first line is not a JSON capture header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CaptureError(f"{path}: not a {FORMAT} file (no header with format={FORMAT!r})")
    if header.get("version") != FORMAT_VERSION:
        raise CaptureError(
            f"{path}: capture format version {header.get('version')!r} is not supported "
            f"(this build reads version {FORMAT_VERSION})"
        )
    return header


def read_records(path: str | Path) -> Generator[Record, None, None]:
    """Every record after the header, in file order. A truncated tail (recorder killed) ends the iteration
    quietly; lines this version does not know are skipped."""
    read_header(path)
    with gzip.open(path, "rb") as f:
        f.readline()
        while True:
            try:
                line = f.readline()
            except (EOFError, OSError, gzip.BadGzipFile):
                return
            if not line:
                return
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError:
                return  # a torn last line
            if not isinstance(item, dict):
                continue
            if "raw" in item:
                yield FrameRecord(float(item["t"]), str(item["link"]), str(item["raw"]).encode())
            elif "raw_b64" in item:
                yield FrameRecord(float(item["t"]), str(item["link"]), base64.b64decode(item["raw_b64"]))
            elif "event" in item:
                yield LinkEvent(float(item["t"]), str(item["link"]), str(item["event"]))
            elif "end" in item:
                yield Trailer(float(item["end"]), int(item.get("frames", 0)))


# ---------------------------------------------------------------------------------------------------------
# Record
# ---------------------------------------------------------------------------------------------------------


def _channel_of(raw: bytes) -> str | None:
    """The `channel` of a data frame without parsing it (it comes before `contents`)."""
    start = raw.find(_CHANNEL_KEY)
    if start < 0:
        return None
    start += len(_CHANNEL_KEY)
    end = raw.find(b'"', start)
    return raw[start:end].decode() if end > 0 else None


class RecordingSink:
    """A FrameSink that writes every frame to the capture and tells the feed only what it needs to keep
    its subscriptions (connected, subscribed, unsubscribed, error). Data frames are not parsed."""

    def __init__(self, writer: CaptureWriter, clock: Callable[[], float] = time.time) -> None:
        self._writer = writer
        self._clock = clock
        self._last_data: dict[tuple[str, str], float] = {}
        self.connections = 0
        self.data_frames: dict[str, int] = {}

    def link_opened(self, link: str) -> None:
        self._writer.event(self._clock(), link, "opened")

    def link_closed(self, link: str) -> None:
        self._writer.event(self._clock(), link, "closed")
        for key in [k for k in self._last_data if k[0] == link]:
            del self._last_data[key]

    def handle(self, link: str, raw: str | bytes, received_at: float) -> Control | None:
        data = raw.encode() if isinstance(raw, str) else raw
        self._writer.frame(received_at, link, data)
        if data.startswith(_DATA_PREFIXES):
            channel = _channel_of(data)
            if channel is not None:
                self._last_data[(link, channel)] = received_at
                self.data_frames[channel] = self.data_frames.get(channel, 0) + 1
            return None
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(msg, dict):
            return None
        kind = msg.get("type")
        channel = msg.get("channel")
        sub_id = msg.get("id")
        sub_id = sub_id if isinstance(sub_id, str) else None
        if kind == ch.T_CONNECTED:
            self.connections += 1
            return Connected(link, str(msg.get("connection_id", "")))
        if not isinstance(channel, str):
            if kind == ch.T_ERROR:
                message = str(msg.get("message", ""))
                return ServerError(link, message, ch.classify_error(message), None, None)
            return None
        if kind == ch.T_SUBSCRIBED:
            message_id = msg.get("message_id")
            return Subscribed(link, channel, sub_id, message_id if isinstance(message_id, int) else -1)
        if kind == ch.T_UNSUBSCRIBED:
            return Unsubscribed(link, channel, sub_id)
        if kind == ch.T_ERROR:
            message = str(msg.get("message", ""))
            return ServerError(link, message, ch.classify_error(message), channel, sub_id)
        if kind in (ch.T_CHANNEL_DATA, ch.T_CHANNEL_BATCH_DATA):  # another server's key order
            self._last_data[(link, channel)] = received_at
            self.data_frames[channel] = self.data_frames.get(channel, 0) + 1
        return None

    def take_markets_change(self) -> None:
        """Markets come from REST discovery (or --markets), never from the recorded stream."""
        return None

    def load_markets(self, perpetual_markets: Mapping[str, Mapping[str, object]]) -> None:
        return None

    def forget_market(self, ticker: str) -> None:
        return None

    def last_data_at(self, link: str, channel: str) -> float | None:
        return self._last_data.get((link, channel))


class _QuietObserver:
    """The recorder has no metrics: the feed's own log events say what happens to the links."""

    def link_up(self, link: str, up: bool) -> None: ...

    def link_disconnected(self, link: str, code: int) -> None: ...

    def reconnected(self) -> None: ...

    def connection_failed(self, reason: str) -> None: ...

    def ping_rtt(self, seconds: float) -> None: ...

    def subscriptions(self, counts: Mapping[tuple[str, str], int]) -> None: ...

    def subscription_failed(self, channel: str, reason: str) -> None: ...

    def component_up(self, component: str, up: bool) -> None: ...

    def rest_request(self, endpoint: str, code: str, seconds: float) -> None: ...


def rest_url_for(ws_url: str) -> str:
    """The REST base an indexer WebSocket URL implies: wss://host/v4/ws → https://host."""
    scheme, sep, rest = ws_url.partition("://")
    host = rest.split("/", 1)[0]
    return ("https" if scheme == "wss" else "http") + sep + host


@dataclass(frozen=True, slots=True)
class RecordConfig:
    output: Path
    ws_url: str = NETWORKS["mainnet"][0]
    rest_url: str = NETWORKS["mainnet"][1]
    network: str = "mainnet"
    #: None: every market the REST API lists (not in FINAL_SETTLEMENT).
    markets: tuple[str, ...] | None = None
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    candle_resolutions: tuple[str, ...] = ()
    #: None: until stopped.
    duration: float | None = None
    subscribe_rate: float = 40.0

    def settings(self) -> Settings:
        """The feed settings the recorder drives the pool with (unbatched: the raw per-update frames)."""
        return Settings(
            feed=FeedSettings(
                ws_url=self.ws_url, rest_url=self.rest_url, batched=False, subscribe_rate=self.subscribe_rate
            ),
            network=self.network,
            markets=self.markets,
            channels=self.channels,
            candle_resolutions=self.candle_resolutions,
        )

    def header(self, started_at: float) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "source": self.ws_url,
            "rest": self.rest_url,
            "network": self.network,
            "started_at": started_at,
            "started": formats.iso_ms(started_at),
            "channels": list(self.channels),
            "candle_resolutions": list(self.candle_resolutions),
            "markets": list(self.markets) if self.markets is not None else "all",
            "batched": False,
            "recorder": f"dydx-exporter {__version__}",
        }


class Recorder:
    """`await start()` opens the file and subscribes; `await stop()` unsubscribes, closes the links and
    closes the file cleanly (header, every frame received, trailer)."""

    def __init__(self, config: RecordConfig) -> None:
        self.config = config
        self.started_at = 0.0
        self.writer = CaptureWriter(config.output, {})
        self.sink = RecordingSink(self.writer)
        self._session: aiohttp.ClientSession | None = None
        self._pool: Pool | None = None
        self._discovery: Discovery | None = None

    @property
    def frames(self) -> int:
        return self.writer.frames

    async def start(self) -> None:
        settings = self.config.settings()
        self.started_at = time.time()
        self.writer = CaptureWriter(self.config.output, self.config.header(self.started_at))
        self.sink = RecordingSink(self.writer)
        await self.writer.open()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=settings.feed.handshake_timeout)
        )
        observer = _QuietObserver()
        self._pool = Pool(settings, self._session, self.sink, observer)
        try:
            await self._pool.start()
            if self.config.markets is None and settings.market_channels:
                self._discovery = Discovery(
                    settings,
                    self._session,
                    self.sink,
                    observer,
                    self._pool,
                )
                await self._discovery.start()
            elif self.config.markets is not None:
                self._pool.set_markets(self.config.markets)
        except BaseException:
            await self.stop()
            raise
        log.info(
            "record_started",
            output=str(self.config.output),
            url=self.config.ws_url,
            channels=list(self.config.channels),
            markets=list(self.config.markets) if self.config.markets else "all",
            duration=self.config.duration,
        )

    async def stop(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                if self._discovery is not None:
                    await self._discovery.stop()
                if self._pool is not None:
                    await self._pool.stop()
        self._discovery = self._pool = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.writer.close()
        log.info(
            "record_finished",
            output=str(self.config.output),
            frames=self.writer.frames,
            bytes_received=self.writer.bytes_in,
            connections=self.sink.connections,
            seconds=round(time.time() - self.started_at, 3),
        )


def build_record_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dydx-exporter record",
        description="Record the raw frames of a dYdX v4 indexer WebSocket feed (the real one by default) to "
        "a gzip-compressed JSON-lines capture, for `dydx-exporter simulate --replay FILE`.",
    )
    p.add_argument(
        "--output", "-o", required=True, type=Path, help="capture file to write (e.g. cap.jsonl.gz)"
    )
    p.add_argument(
        "--dydx.network",
        dest="network",
        choices=sorted(NETWORKS),
        default="mainnet",
        help="indexer network; sets the default URLs (default mainnet)",
    )
    p.add_argument(
        "--dydx.ws-url", dest="ws_url", default="", help="WebSocket URL (default from the network)"
    )
    p.add_argument(
        "--dydx.rest-url",
        dest="rest_url",
        default="",
        help="REST base URL, used to list markets for --markets all (default: from --dydx.ws-url, else the "
        "network's)",
    )
    p.add_argument(
        "--markets", default="all", help="'all' or a comma-separated list of tickers (default all)"
    )
    p.add_argument(
        "--channels",
        default=",".join(DEFAULT_CHANNELS),
        help=f"comma-separated channels (default {','.join(DEFAULT_CHANNELS)}; also {ch.CANDLES})",
    )
    p.add_argument(
        "--candles.resolutions",
        dest="resolutions",
        default="",
        help="candle resolutions to record (enables v4_candles), e.g. 1MIN,5MINS",
    )
    p.add_argument(
        "--duration", default="", help="stop after this long (e.g. 90s, 10m; default: until SIGINT/SIGTERM)"
    )
    p.add_argument(
        "--feed.subscribe-rate",
        dest="subscribe_rate",
        type=float,
        default=40.0,
        help="subscribe messages per second across all connections (default 40, as the exporter)",
    )
    logs.add_flags(p)
    return p


def record_config_from_args(args: argparse.Namespace) -> RecordConfig:
    """Raises ValueError with a message naming the flag."""
    default_ws, default_rest = NETWORKS[args.network]
    ws_url = args.ws_url or default_ws
    if not ws_url.startswith(("ws://", "wss://")):
        raise ValueError(f"--dydx.ws-url must start with ws:// or wss://, not {ws_url!r}")
    rest_url = (args.rest_url or (rest_url_for(ws_url) if args.ws_url else default_rest)).rstrip("/")
    if not rest_url.startswith(("http://", "https://")):
        raise ValueError(f"--dydx.rest-url must start with http:// or https://, not {rest_url!r}")
    try:
        markets = parse_markets(args.markets)
    except ValueError as exc:
        raise ValueError(f"--markets: {exc}") from None
    resolutions = parse_list(args.resolutions)
    channels = list(parse_list(args.channels))
    if resolutions and ch.CANDLES not in channels:
        channels.append(ch.CANDLES)
    for channel in channels:
        if channel not in SUPPORTED_CHANNELS:
            raise ValueError(
                f"--channels: unknown channel {channel!r}; supported: {', '.join(SUPPORTED_CHANNELS)}"
            )
    if not channels:
        raise ValueError("--channels: at least one channel is required")
    for resolution in resolutions:
        if resolution not in ch.CANDLE_RESOLUTIONS:
            raise ValueError(f"--candles.resolutions: unknown resolution {resolution!r}")
    if ch.CANDLES in channels and not resolutions:
        raise ValueError(
            "--candles.resolutions: v4_candles is in --channels, so name at least one resolution"
        )
    duration = None
    if args.duration:
        try:
            duration = parse_duration(args.duration)
        except ValueError as exc:
            raise ValueError(f"--duration: {exc}") from None
        if duration <= 0:
            raise ValueError("--duration must be greater than zero")
    if not args.subscribe_rate > 0:
        raise ValueError("--feed.subscribe-rate must be > 0")
    return RecordConfig(
        output=args.output,
        ws_url=ws_url,
        rest_url=rest_url,
        network=args.network,
        markets=markets,
        channels=tuple(channels),
        candle_resolutions=resolutions,
        duration=duration,
        subscribe_rate=args.subscribe_rate,
    )


async def record(config: RecordConfig, stop: asyncio.Event | None = None) -> int:
    """Record until `config.duration` passes or `stop` is set (SIGINT/SIGTERM in the CLI). Returns the
    number of frames written."""
    stop = stop or asyncio.Event()
    recorder = Recorder(config)
    await recorder.start()
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(config.duration):
                await stop.wait()
    finally:
        await recorder.stop()
    if recorder.sink.connections == 0:
        log.warning("record_no_connection", url=config.ws_url)
    return recorder.frames


async def _record_until_signalled(config: RecordConfig) -> int:
    with StopSignals() as signals:
        return await record(config, signals.stop)


def record_main(argv: Sequence[str] | None = None) -> int:
    """`dydx-exporter record`: 0 when frames were recorded, 1 when none (or the file cannot be written),
    2 for bad flags."""
    parser = build_record_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        config = record_config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    logs.configure(args.log_level, args.log_format)
    try:
        frames = asyncio.run(_record_until_signalled(config))
    except OSError as exc:
        print(f"dydx-exporter record: cannot write {config.output}: {exc}", file=sys.stderr)
        return 1
    if frames == 0:
        print(f"dydx-exporter record: nothing was received from {config.ws_url}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------------------------
# Replay
# ---------------------------------------------------------------------------------------------------------


def _price_key(level: str) -> float:
    try:
        return float(level)
    except ValueError:
        return 0.0


def _is_zero(size: object) -> bool:
    try:
        return float(size) == 0.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


@dataclass(slots=True)
class _Book:
    """An L2 book as the feed builds it: price string → absolute size string, per side."""

    bids: dict[str, str] = field(default_factory=dict)
    asks: dict[str, str] = field(default_factory=dict)

    def reset(self, snapshot: object) -> None:
        self.bids.clear()
        self.asks.clear()
        if isinstance(snapshot, dict):
            self._load(self.bids, snapshot.get("bids"))
            self._load(self.asks, snapshot.get("asks"))

    def apply(self, update: Mapping[str, Any]) -> None:
        self._load(self.bids, update.get("bids"))
        self._load(self.asks, update.get("asks"))

    @staticmethod
    def _load(side: dict[str, str], levels: object) -> None:
        if not isinstance(levels, list):
            return
        for level in levels:
            if isinstance(level, dict):
                price, size = level.get("price"), level.get("size")
            elif isinstance(level, list) and len(level) >= 2:
                price, size = level[0], level[1]
            else:
                continue
            if not isinstance(price, str) or not isinstance(size, str):
                continue
            if _is_zero(size):
                side.pop(price, None)
            else:
                side[price] = size

    def view(self) -> dict[str, list[dict[str, str]]]:
        """comlink's orderbook: top levels per side, bids descending, asks ascending, never crossed."""
        bids = sorted(self.bids, key=_price_key, reverse=True)[:BOOK_LEVELS]
        asks = sorted(self.asks, key=_price_key)[:BOOK_LEVELS]
        if bids and asks and _price_key(bids[0]) >= _price_key(asks[0]):
            keys = [_price_key(p) for p in asks]
            asks = asks[bisect.bisect_right(keys, _price_key(bids[0])) :]
        return {
            "bids": [{"price": p, "size": self.bids[p]} for p in bids],
            "asks": [{"price": p, "size": self.asks[p]} for p in asks],
        }


def _trade_row(trade: Mapping[str, Any]) -> dict[str, Any]:
    """An update's trade as a REST/snapshot row: createdAtHeight from the event id's first 8 hex digits."""
    row = {k: trade.get(k) for k in ("id", "side", "size", "price", "type", "createdAt")}
    trade_id = trade.get("id")
    with contextlib.suppress(TypeError, ValueError):
        row["createdAtHeight"] = str(ch.trade_id_height(str(trade_id)))
    return row


def _shift_iso(value: object, offset: float) -> object:
    if not isinstance(value, str):
        return value
    try:
        return formats.iso_ms(formats.parse_iso(value) + offset)
    except ValueError:
        return value


def retimed(channel: str, contents: Any, offset: float) -> Any:
    """A copy of an update or snapshot with its exchange timestamps (block `time`, trades `createdAt`,
    oracle `effectiveAt`) moved by `offset` seconds; everything else, candles included, as it was."""
    if not isinstance(contents, dict):
        return contents
    out = dict(contents)
    if channel == ch.BLOCK_HEIGHT and "time" in out:
        out["time"] = _shift_iso(out["time"], offset)
    elif channel == ch.TRADES and isinstance(out.get("trades"), list):
        out["trades"] = [
            {**t, "createdAt": _shift_iso(t["createdAt"], offset)}
            if isinstance(t, dict) and "createdAt" in t
            else t
            for t in out["trades"]
        ]
    elif channel == ch.MARKETS and isinstance(out.get("oraclePrices"), dict):
        out["oraclePrices"] = {
            ticker: {**p, "effectiveAt": _shift_iso(p["effectiveAt"], offset)}
            if isinstance(p, dict) and "effectiveAt" in p
            else p
            for ticker, p in out["oraclePrices"].items()
        }
    return out


class ReplayState:
    """What subscribers and REST clients ask for, kept current with the replayed updates."""

    def __init__(self) -> None:
        self.markets: dict[str, dict[str, Any]] = {}
        self.books: dict[str, _Book] = {}
        self.trades: dict[str, deque[dict[str, Any]]] = {}
        self.candles: dict[str, list[dict[str, Any]]] = {}
        self.subaccounts: dict[tuple[str, str], Any] = {}
        self.height = 0
        self.height_time = ""
        self.has_block_height = False

    def reset(self, channel: str, key: str | None, contents: Any) -> None:
        """A recorded `subscribed` snapshot: the truth for (channel, key) from here on."""
        if channel == ch.MARKETS:
            markets = contents.get("markets") if isinstance(contents, dict) else None
            if isinstance(markets, dict):
                self.markets = {t: dict(m) for t, m in markets.items() if isinstance(m, dict)}
        elif channel == ch.BLOCK_HEIGHT:
            if isinstance(contents, dict):
                self._set_height(contents.get("height"), contents.get("time"))
                self.has_block_height = True
        elif key is None:
            return
        elif channel == ch.ORDERBOOK:
            self.books.setdefault(key, _Book()).reset(contents)
        elif channel == ch.TRADES:
            rows = contents.get("trades") if isinstance(contents, dict) else None
            rows = rows if isinstance(rows, list) else []
            self.trades[key] = deque((dict(r) for r in rows if isinstance(r, dict)), maxlen=HISTORY_ROWS)
        elif channel == ch.CANDLES:
            rows = contents.get("candles") if isinstance(contents, dict) else None
            self.candles[key] = (
                [dict(r) for r in rows if isinstance(r, dict)][:HISTORY_ROWS]
                if isinstance(rows, list)
                else []
            )
        elif channel in (ch.SUBACCOUNTS, ch.PARENT_SUBACCOUNTS):
            self.subaccounts[(channel, key)] = contents

    def apply(self, channel: str, key: str | None, contents: Mapping[str, Any]) -> None:
        """One update (a channel_data `contents`, or one item of a channel_batch_data)."""
        if channel == ch.ORDERBOOK and key is not None:
            self.books.setdefault(key, _Book()).apply(contents)
        elif channel == ch.TRADES and key is not None:
            rows = self.trades.setdefault(key, deque(maxlen=HISTORY_ROWS))
            trades = contents.get("trades")
            for trade in trades if isinstance(trades, list) else ():
                if isinstance(trade, dict):
                    row = _trade_row(trade)
                    rows.appendleft(row)
                    if not self.has_block_height and "createdAtHeight" in row:
                        self._set_height(row["createdAtHeight"], row["createdAt"])
        elif channel == ch.MARKETS:
            self._apply_markets(contents)
        elif channel == ch.CANDLES and key is not None:
            candles = self.candles.setdefault(key, [])
            if candles and candles[0].get("startedAt") == contents.get("startedAt"):
                candles[0] = dict(contents)
            else:
                candles.insert(0, dict(contents))
                del candles[HISTORY_ROWS:]
        elif channel == ch.BLOCK_HEIGHT:
            self._set_height(contents.get("blockHeight"), contents.get("time"))
            self.has_block_height = True

    def _apply_markets(self, contents: Mapping[str, Any]) -> None:
        oracle = contents.get("oraclePrices")
        if isinstance(oracle, dict):
            for ticker, price in oracle.items():
                market = self.markets.get(ticker)
                if market is not None and isinstance(price, dict) and "oraclePrice" in price:
                    market["oraclePrice"] = price["oraclePrice"]
        trading = contents.get("trading")
        if isinstance(trading, dict):
            for ticker, fields in trading.items():
                if isinstance(fields, dict):
                    self.markets.setdefault(ticker, {}).update(fields)

    def _set_height(self, height: object, when: object) -> None:
        if isinstance(height, str) and height.isdigit() and int(height) >= self.height:
            self.height = int(height)
            if isinstance(when, str):
                self.height_time = when


class _Scan:
    """What one pass over a capture tells before replaying it: the first snapshot of every subscription,
    the tickers it holds and its time span."""

    def __init__(self, path: str | Path) -> None:
        self.first: dict[tuple[str, str | None], Any] = {}
        self.tickers: list[str] = []
        self.first_t: float | None = None
        self.last_t = 0.0
        self.frames = 0
        seen: set[str] = set()
        for record in read_records(path):
            if not isinstance(record, FrameRecord):
                continue
            self.frames += 1
            if self.first_t is None:
                self.first_t = record.t
            self.last_t = max(self.last_t, record.t)
            if record.raw.startswith(_DATA_PREFIXES):
                self._note_ticker(record.raw, seen)
                continue
            try:
                msg = orjson.loads(record.raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(msg, dict):
                continue
            channel, key = msg.get("channel"), msg.get("id")
            if not isinstance(channel, str):
                continue
            key = key if isinstance(key, str) else None
            self._add_ticker(channel, key, seen)
            if msg.get("type") == ch.T_SUBSCRIBED and (channel, key) not in self.first:
                self.first[(channel, key)] = msg.get("contents")

    def _note_ticker(self, raw: bytes, seen: set[str]) -> None:
        """The ticker of a data frame, cheaply: its `id` precedes `contents`."""
        start = raw.find(b'"id":"')
        if start < 0:
            return
        end = raw.find(b'"', start + 6)
        channel = _channel_of(raw)
        if channel is not None and end > 0:
            self._add_ticker(channel, raw[start + 6 : end].decode(errors="replace"), seen)

    def _add_ticker(self, channel: str, key: str | None, seen: set[str]) -> None:
        if key is None or channel not in (ch.ORDERBOOK, ch.TRADES, ch.CANDLES):
            return
        ticker = key.rpartition("/")[0] if channel == ch.CANDLES else key
        if ticker and ticker not in seen:
            seen.add(ticker)
            self.tickers.append(ticker)


class ReplaySource:
    """An EventSource serving a capture. `speed` multiplies the recorded pace; 0 replays as fast as the
    server can publish (MAX_FRAMES_PER_TICK per tick). With `loop`, the capture starts over at its end (the
    state goes back to the first snapshots; heights and trade ids repeat). With `retime`, exchange
    timestamps are moved by (exchange clock now - the frame's receive time), so data looks as fresh (or as
    late, under a `lag` fault) as it was when recorded, instead of as old as the capture."""

    #: Seconds between two `advance` calls.
    tick_interval: float = 0.02
    #: Upper bound of recorded frames published per tick (speed 0, or a capture denser than that).
    MAX_FRAMES_PER_TICK: Final = 1000
    #: A longer gap between two ticks (the server paused, or the loop stalled) is replayed as this.
    MAX_STEP_S: Final = 0.1

    def __init__(
        self,
        path: str | Path,
        publisher: Publisher,
        *,
        speed: float = 1.0,
        loop: bool = False,
        retime: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed < 0 or speed != speed:
            raise ValueError(f"replay speed must be >= 0 (0 = as fast as possible), not {speed}")
        self.path = Path(path)
        self.header = read_header(self.path)
        self._pub = publisher
        self.speed = speed
        self.loop = loop
        self.retime = retime
        self._clock = clock
        self._exchange_now: float | None = None
        self._scan = _Scan(self.path)
        self.state = ReplayState()
        self._owner: dict[tuple[str, str | None], str] = {}
        self._records: Generator[Record, None, None] | None = None
        self._next: FrameRecord | None = None
        self._position = 0.0
        self._last_tick: float | None = None
        self._crossed: dict[str, str] = {}
        #: Markets a `cross` fault with `recross` keeps crossed → the crossed ask last published for it.
        self._kept_crossed: dict[str, str | None] = {}
        self._delisted: set[str] = set()
        self.finished = False
        self.published = 0
        self.passes = 0
        self.skipped = 0
        self._restart()
        log.info(
            "replay_loaded",
            path=str(self.path),
            source=self.header.get("source"),
            frames=self._scan.frames,
            seconds=round(self.duration, 3),
            tickers=len(self._scan.tickers),
            speed=speed,
            loop=loop,
            retime=retime,
        )

    @property
    def duration(self) -> float:
        """Seconds from the first to the last recorded frame."""
        return 0.0 if self._scan.first_t is None else self._scan.last_t - self._scan.first_t

    @property
    def position(self) -> float:
        """Seconds of the capture replayed so far (in recorded time)."""
        return 0.0 if self._scan.first_t is None else self._position - self._scan.first_t

    def _restart(self) -> None:
        self.state = ReplayState()
        start = self._scan.first_t or 0.0
        offset = (time.time() if self._exchange_now is None else self._exchange_now) - start
        for (channel, key), contents in self._scan.first.items():
            self.state.reset(channel, key, retimed(channel, contents, offset) if self.retime else contents)
        self._owner.clear()
        self._crossed.clear()
        if self._records is not None:
            self._records.close()
        self._records = read_records(self.path)
        self._next = self._pull()
        self._position = self._scan.first_t or 0.0
        self.passes += 1

    def _pull(self) -> FrameRecord | None:
        for record in self._records or ():
            if isinstance(record, FrameRecord):
                return record
        return None

    # ---- EventSource: time ----
    def advance(self, exchange_now: float) -> None:
        self._replay(exchange_now)
        for ticker in self._kept_crossed:
            self._cross_again(ticker, force=False)

    def _replay(self, exchange_now: float) -> None:
        now = self._clock()
        step = 0.0 if self._last_tick is None else min(max(0.0, now - self._last_tick), self.MAX_STEP_S)
        self._last_tick = now
        self._exchange_now = exchange_now
        if self.finished:
            return
        fast = self.speed == 0
        self._position += step * self.speed
        budget = self.MAX_FRAMES_PER_TICK
        while budget > 0:
            record = self._next
            if record is None:
                if not self.loop:
                    self.finished = True
                    if self._records is not None:
                        self._records.close()  # the file is not needed any more
                    log.info("replay_finished", path=str(self.path), published=self.published)
                    return
                log.info("replay_looped", path=str(self.path), passes=self.passes)
                self._restart()
                return
            if not fast and record.t > self._position:
                return
            self._play(record)
            self._next = self._pull()
            budget -= 1

    def _play(self, record: FrameRecord) -> None:
        try:
            msg = orjson.loads(record.raw)
        except orjson.JSONDecodeError:
            self.skipped += 1
            return
        if not isinstance(msg, dict):
            self.skipped += 1
            return
        kind = msg.get("type")
        channel = msg.get("channel")
        if not isinstance(channel, str) or channel not in ch.VERSIONS:
            return  # connected, ping-less control frames, errors without a channel
        raw_key = msg.get("id")
        key = raw_key if isinstance(raw_key, str) else None
        offset = (self._exchange_now or record.t) - record.t
        if kind == ch.T_SUBSCRIBED:
            self._owner[(channel, key)] = record.link
            contents = msg.get("contents")
            self.state.reset(channel, key, retimed(channel, contents, offset) if self.retime else contents)
            return
        if kind not in (ch.T_CHANNEL_DATA, ch.T_CHANNEL_BATCH_DATA):
            return
        owner = self._owner.setdefault((channel, key), record.link)
        if owner != record.link:
            return  # the same subscription recorded twice (on two connections): publish it once
        contents = msg.get("contents")
        items = contents if kind == ch.T_CHANNEL_BATCH_DATA and isinstance(contents, list) else [contents]
        number = msg.get("subaccountNumber")
        extra = b',"subaccountNumber":%d' % number if isinstance(number, int) else b""
        for item in items:
            if not isinstance(item, dict) or (
                channel == ch.TRADES and not isinstance(item.get("trades"), list)
            ):
                self.skipped += 1
                continue
            if self.retime:
                item = retimed(channel, item, offset)
            self.state.apply(channel, key, item)
            self._pub.publish(channel, key, item, extra)
            self.published += 1

    # ---- EventSource: subscriptions ----
    def tickers(self) -> list[str]:
        """The markets the capture holds data for; the markets snapshot's if it holds none."""
        tickers = self._scan.tickers or list(self.state.markets)
        return [t for t in tickers if t not in self._delisted]

    def valid(self, channel: str, key: str | None) -> bool:
        verdict = valid_market_subscription(channel, key, self.tickers())
        return (channel, key) in self.state.subaccounts if verdict is None else verdict

    def snapshot(self, channel: str, key: str | None) -> Any:
        if channel == ch.MARKETS:
            return {"markets": self._market_objects(None)}
        if channel == ch.BLOCK_HEIGHT:
            return {"height": str(self.state.height), "time": self.state.height_time}
        assert key is not None
        if channel == ch.ORDERBOOK:
            return self.rest_orderbook(key) or {"bids": [], "asks": []}
        if channel == ch.TRADES:
            return {"trades": self.rest_trades(key) or []}
        if channel == ch.CANDLES:
            ticker, _, resolution = key.rpartition("/")
            return {"candles": self.rest_candles(ticker, resolution) or []}
        return self.state.subaccounts.get((channel, key), {})

    # ---- EventSource: REST ----
    def _market_objects(self, limit: int | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for index, ticker in enumerate(self.tickers()):
            if limit is not None and len(out) >= limit:
                break
            out[ticker] = self.state.markets.get(ticker) or self._stand_in_market(ticker, index)
        return out

    def _stand_in_market(self, ticker: str, index: int) -> dict[str, Any]:
        """A capture without v4_markets still needs a market list for discovery: the essentials, with the
        last traded (or best bid) price as the oracle price."""
        trades = self.state.trades.get(ticker)
        book = self.state.books.get(ticker)
        price = "1"
        if trades:
            price = str(trades[0].get("price") or price)
        elif book is not None and book.bids:
            price = max(book.bids, key=_price_key)
        return {"clobPairId": str(index), "ticker": ticker, "status": "ACTIVE", "oraclePrice": price}

    def rest_markets(self, ticker: str | None, limit: int) -> Mapping[str, Any] | None:
        if ticker is not None:
            if ticker not in self.tickers():
                return None
            return {"markets": {ticker: self._market_objects(None)[ticker]}}
        return {"markets": self._market_objects(limit)}

    def rest_orderbook(self, ticker: str) -> Mapping[str, Any] | None:
        if ticker not in self.tickers():
            return None
        book = self.state.books.get(ticker)
        return book.view() if book is not None else {"bids": [], "asks": []}

    def rest_trades(self, ticker: str) -> list[dict[str, Any]] | None:
        if ticker not in self.tickers():
            return None
        return list(self.state.trades.get(ticker, ()))

    def rest_candles(self, ticker: str, resolution: str) -> list[dict[str, Any]] | None:
        if ticker not in self.tickers():
            return None
        return list(self.state.candles.get(ch.candle_id(ticker, resolution), ()))

    def height(self) -> tuple[int, float]:
        when = 0.0
        if self.state.height_time:
            with contextlib.suppress(ValueError):
                when = formats.parse_iso(self.state.height_time)
        return self.state.height, when

    # ---- control API ----
    def list_market(self, ticker: str, price: float | None) -> dict[str, Any]:
        raise ValueError("markets cannot be listed while replaying a capture")

    def delist_market(self, ticker: str) -> None:
        if ticker not in self.tickers():
            raise KeyError(ticker)
        self._delisted.add(ticker)
        self._pub.publish(ch.MARKETS, None, {"trading": {ticker: {"status": "FINAL_SETTLEMENT"}}})

    def start_cross(self, ticker: str, keep: bool = False) -> None:
        """A bid at the second-best ask price: crossed in the stream, uncrossed in REST views. With `keep`,
        crossed again whenever the replayed updates uncross it, and after every new snapshot."""
        if keep:
            self._kept_crossed.setdefault(ticker, None)
        book = self.state.books.get(ticker)
        if book is None or not book.asks or ticker in self._crossed:
            return
        asks = sorted(book.asks, key=_price_key)[:2]
        price = asks[-1]
        size = book.asks[price]
        self._crossed[ticker] = price
        update = {"bids": [[price, size]]}
        book.apply(update)
        self._pub.publish(ch.ORDERBOOK, ticker, update)

    def recross(self, ticker: str) -> None:
        self._cross_again(ticker, force=True)

    def _cross_again(self, ticker: str, *, force: bool) -> None:
        """Snapshots leave out the asks at or under the crossing bid, and replayed updates take them away:
        publish the best of them again when it changed (or when `force`d, for a fresh snapshot); when none
        is left, cross anew over the asks there are."""
        price = self._crossed.get(ticker)
        book = self.state.books.get(ticker)
        if price is None or book is None or not book.asks:
            return
        best = min(book.asks, key=_price_key)
        if _price_key(best) > _price_key(price):
            self._end_crossing_bid(ticker)
            self.start_cross(ticker)
        elif force or self._kept_crossed.get(ticker) != best:
            self._pub.publish(ch.ORDERBOOK, ticker, {"asks": [[best, book.asks[best]]]})
        if ticker in self._kept_crossed:
            self._kept_crossed[ticker] = best

    def end_cross(self, ticker: str) -> None:
        self._kept_crossed.pop(ticker, None)
        self._end_crossing_bid(ticker)

    def _end_crossing_bid(self, ticker: str) -> None:
        price = self._crossed.pop(ticker, None)
        book = self.state.books.get(ticker)
        if price is None or book is None or price not in book.bids:
            return
        update = {"bids": [[price, "0"]]}
        book.apply(update)
        self._pub.publish(ch.ORDERBOOK, ticker, update)


def replay_source(
    path: str | Path, *, speed: float = 1.0, loop: bool = False, retime: bool = False
) -> Callable[[Publisher], ReplaySource]:
    """The `source_factory` of a Simulator serving the capture at `path`:

        Simulator(SimulatorConfig(port=0), source_factory=replay_source("cap.jsonl.gz", speed=0))

    The header is checked now, so a bad file fails before a server is built."""
    read_header(path)
    if speed < 0 or speed != speed:
        raise ValueError(f"replay speed must be >= 0 (0 = as fast as possible), not {speed}")
    return lambda publisher: ReplaySource(path, publisher, speed=speed, loop=loop, retime=retime)
