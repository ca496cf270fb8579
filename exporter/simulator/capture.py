"""The capture file of `dydx-exporter record` and `simulate --replay`: raw indexer frames as gzip-compressed
JSON lines, one JSON object per line:

    {"format":"dydx-capture","version":1,"source":"wss://…/v4/ws","started_at":1772652067.51,…}  header
    {"t":1772652067.612,"link":"conn-0","raw":"{\"type\":\"connected\",…}"}                       a frame
    {"t":1772652067.600,"link":"conn-0","event":"opened"}                                          link event
    {"end":1772652127.9,"frames":48211}                                                            trailer

`t` is the wall-clock receive time (epoch seconds), `link` the recorder's connection name, `raw` the frame's
text byte for byte (`raw_b64` instead for a frame that is not UTF-8). The trailer is missing when the
recorder was killed; the reader then stops at the last complete line.

The recorder is `exporter.simulator.recorder`, the replay source `exporter.simulator.replay`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

FORMAT: Final = "dydx-capture"
FORMAT_VERSION: Final = 1
#: Seconds between two writes of buffered lines to the compressor (and on to disk).
FLUSH_INTERVAL_S: Final = 0.5
#: Buffered bytes that trigger an early write.
FLUSH_BYTES: Final = 1 << 20
#: Seconds between two full flushes of the compressor: a recorder killed without a chance to close the
#: file loses at most this much (a full flush costs a little compression, so not at every write).
SYNC_INTERVAL_S: Final = 5.0
#: How every data frame (and only a data frame) starts, as the indexer writes it.
DATA_PREFIXES: Final = (b'{"type":"channel_data"', b'{"type":"channel_batch_data"')
_CHANNEL_KEY: Final = b'"channel":"'


class CaptureError(ValueError):
    """The file is not a capture this version can read; the message says why."""


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


def channel_of(raw: bytes) -> str | None:
    """The `channel` of a data frame without parsing it (it comes before `contents`)."""
    start = raw.find(_CHANNEL_KEY)
    if start < 0:
        return None
    start += len(_CHANNEL_KEY)
    end = raw.find(b'"', start)
    return raw[start:end].decode() if end > 0 else None
