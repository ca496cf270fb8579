"""`dydx-exporter record`: raw indexer frames to a capture file (capture.py), for `simulate --replay`.

The recorder drives the feed's own `Pool` (and `Discovery` for `--markets all`) with a `RecordingSink`, so
it subscribes exactly as the exporter does: unbatched, at most 32 subscriptions per channel per connection,
paced, reconnecting with backoff. Its flags are the exporter's own option rows (exporter.flags.OPTIONS)
parsed and checked by the exporter's own code (exporter.config.from_raw), plus `--output` and `--duration`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson

from exporter import __version__, logs, options
from exporter.config import OPTIONS, Settings, from_raw
from exporter.feed.discovery import Discovery
from exporter.feed.http import HoldOff
from exporter.feed.pool import Pool
from exporter.lifecycle import StopSignals
from exporter.options import ConfigError, Option, parse_positive_duration, parse_str
from exporter.protocol import channels as ch
from exporter.protocol.control import Connected, Control, Rejected, parse_control
from exporter.simulator import formats
from exporter.simulator.capture import DATA_PREFIXES, FORMAT, FORMAT_VERSION, CaptureWriter, channel_of
from exporter.state.universe import MarketUniverse

log = logs.get_logger(__name__)

PROG: Final = "dydx-exporter record"
#: The exporter's options that mean the same to the recorder (the rest keep their defaults).
EXPORTER_FLAGS: Final = (
    "dydx.network",
    "dydx.ws-url",
    "dydx.rest-url",
    "markets",
    "channels",
    "candles.resolutions",
    "feed.subscribe-rate",
    "log.level",
    "log.format",
)
#: Their option rows, the exporter's own: parsed and checked by the exporter's own code (config.from_raw).
EXPORTER_OPTIONS: Final = tuple(o for o in OPTIONS if o.flag in EXPORTER_FLAGS)
DESCRIPTION: Final = (
    "Record the raw frames of a dYdX v4 indexer WebSocket feed (the real one by default) to a "
    "gzip-compressed JSON-lines capture, for `dydx-exporter simulate --replay FILE`. The other flags are the "
    "exporter's own; --dydx.rest-url defaults to the host of --dydx.ws-url when that is given."
)


def _optional_duration(value: object) -> float | None:
    return parse_positive_duration(value) if parse_str(value) else None


RECORD_OPTIONS: Final = (
    Option("output", "", "capture file to write (e.g. cap.jsonl.gz); required", short="o"),
    Option(
        "duration",
        "",
        "stop after this long (e.g. 90s, 10m); by default, at SIGINT or SIGTERM",
        _optional_duration,
    ),
)


class RecordingSink:
    """A FrameSink that writes every frame to the capture and tells the feed only what it needs to keep
    its subscriptions (connected, subscribed, unsubscribed, error), read by the exporter's own
    `parse_control`. Data frames are not parsed. Which markets to record is the MarketUniverse's business
    (fed by REST discovery, or --markets), never the recorded stream's."""

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
        if data.startswith(DATA_PREFIXES):
            channel = channel_of(data)
            if channel is not None:
                self._note_data(link, channel, received_at)
            return None
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(msg, dict):
            return None
        if msg.get("type") in (ch.T_CHANNEL_DATA, ch.T_CHANNEL_BATCH_DATA):  # another server's key order
            channel = msg.get("channel")
            if isinstance(channel, str):
                self._note_data(link, channel, received_at)
            return None
        event = parse_control(link, msg)  # the exporter's own reading of a control frame
        if isinstance(event, Rejected):
            return None
        if isinstance(event, Connected):
            self.connections += 1
        return event

    def _note_data(self, link: str, channel: str, received_at: float) -> None:
        self._last_data[(link, channel)] = received_at
        self.data_frames[channel] = self.data_frames.get(channel, 0) + 1

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
    #: What to subscribe to and where; the recorder always subscribes unbatched (the raw update frames).
    settings: Settings
    #: None: until stopped.
    duration: float | None = None

    def header(self, started_at: float) -> dict[str, Any]:
        s = self.settings
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "source": s.feed.ws_url,
            "rest": s.feed.rest_url,
            "network": s.network,
            "started_at": started_at,
            "started": formats.iso_ms(started_at),
            "channels": list(s.channels),
            "candle_resolutions": list(s.candle_resolutions),
            "markets": list(s.markets) if s.markets is not None else "all",
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
        s = self.config.settings
        settings = dataclasses.replace(s, feed=dataclasses.replace(s.feed, batched=False))
        self.started_at = time.time()
        self.writer = CaptureWriter(self.config.output, self.config.header(self.started_at))
        self.sink = RecordingSink(self.writer)
        await self.writer.open()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=settings.feed.handshake_timeout)
        )
        observer = _QuietObserver()
        universe = MarketUniverse(settings.wants_market)  # REST discovery feeds it; the pool follows it
        self._pool = Pool(settings, self._session, self.sink, observer, universe)
        try:
            await self._pool.start()
            if settings.markets is None and settings.market_channels:
                self._discovery = Discovery(
                    settings,
                    self._session,
                    universe,
                    observer,
                    self._pool,
                    HoldOff(),
                )
                await self._discovery.start()
            elif settings.markets is not None:
                self._pool.set_markets(settings.markets)
        except BaseException:
            await self.stop()
            raise
        log.info(
            "record_started",
            output=str(self.config.output),
            url=settings.feed.ws_url,
            channels=list(settings.channels),
            markets=list(settings.markets) if settings.markets else "all",
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


def build_record_parser() -> Any:
    rows = (*RECORD_OPTIONS, *EXPORTER_OPTIONS)
    return options.build_parser(rows, prog=PROG, description=DESCRIPTION, with_env=False)


def record_config_from_argv(argv: Sequence[str]) -> RecordConfig:
    """Raises ConfigError naming the flag (or SystemExit for --help)."""
    flags, own = options.parse_command(build_record_parser(), RECORD_OPTIONS, argv)
    if not own["output"]:
        raise ConfigError("--output: the capture file to write is required")
    raw = options.resolve(OPTIONS, {k: v for k, v in flags.items() if k in EXPORTER_FLAGS})
    if "dydx.ws-url" in flags and "dydx.rest-url" not in flags:
        raw["dydx.rest-url"] = (rest_url_for(str(flags["dydx.ws-url"])), "flag --dydx.ws-url")
    return RecordConfig(output=Path(own["output"]), settings=from_raw(raw), duration=own["duration"])


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
        log.warning("record_no_connection", url=config.settings.feed.ws_url)
    return recorder.frames


async def _record_until_signalled(config: RecordConfig) -> int:
    with StopSignals() as signals:
        return await record(config, signals.stop)


def record_main(argv: Sequence[str] | None = None) -> int:
    """`dydx-exporter record`: 0 when frames were recorded, 1 when none (or the file cannot be written),
    2 for bad flags."""
    args = list(sys.argv[1:] if argv is None else argv)
    config = options.parse_command_line(PROG, lambda: record_config_from_argv(args))
    if isinstance(config, int):
        return config
    logs.configure(config.settings.log_level, config.settings.log_format)  # type: ignore[arg-type]
    try:
        frames = asyncio.run(_record_until_signalled(config))
    except OSError as exc:
        print(f"{PROG}: cannot write {config.output}: {exc}", file=sys.stderr)
        return 1
    if frames == 0:
        print(f"{PROG}: nothing was received from {config.settings.feed.ws_url}", file=sys.stderr)
        return 1
    return 0
