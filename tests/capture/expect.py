"""What a capture says should be replayed, read independently of the replay code, and the small tools the
capture tests share: a Publisher that keeps what it is given, and hand-written capture files."""

from __future__ import annotations

import gzip
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from exporter.protocol import channels as ch
from exporter.simulator.capture import FORMAT, FORMAT_VERSION, FrameRecord, read_records

Key = tuple[str, str | None]
SHIPPED = Path(__file__).parent.parent / "data" / "sim-capture.jsonl.gz"
SHIPPED_TRUTH = SHIPPED.with_name("sim-capture.truth.json")


class RecordingPublisher:
    """The Publisher seam, keeping every update in order."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, str | None, Any, bytes]] = []

    def publish(self, channel: str, key: str | None, contents: Any, extra: bytes = b"") -> None:
        # Round-trip through JSON as the hub does, so a later mutation of shared state would show.
        self.updates.append((channel, key, orjson.loads(orjson.dumps(contents)), extra))

    def by_key(self) -> dict[Key, list[Any]]:
        out: dict[Key, list[Any]] = defaultdict(list)
        for channel, key, contents, _ in self.updates:
            out[(channel, key)].append(contents)
        return dict(out)


def frames(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(r.raw) for r in read_records(path) if isinstance(r, FrameRecord)]


def recorded_updates(path: Path) -> dict[Key, list[Any]]:
    """(channel, id) → every update's contents, in recorded order (batches flattened)."""
    out: dict[Key, list[Any]] = defaultdict(list)
    for frame in frames(path):
        if frame["type"] == ch.T_CHANNEL_DATA:
            out[(frame["channel"], frame.get("id"))].append(frame["contents"])
        elif frame["type"] == ch.T_CHANNEL_BATCH_DATA:
            out[(frame["channel"], frame.get("id"))].extend(frame["contents"])
    return dict(out)


def first_snapshots(path: Path) -> dict[Key, Any]:
    out: dict[Key, Any] = {}
    for frame in frames(path):
        if frame["type"] == ch.T_SUBSCRIBED:
            out.setdefault((frame["channel"], frame.get("id")), frame["contents"])
    return out


def write_capture(
    path: Path, lines: list[Any], *, header: dict[str, Any] | None = None, trailer: bool = True
) -> Path:
    """A capture by hand: `lines` are (t, link, frame-as-object-or-raw-string) tuples."""
    head = header or {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "source": "ws://test/v4/ws",
        "started_at": 0,
    }
    with gzip.open(path, "wb") as f:
        f.write(orjson.dumps(head) + b"\n")
        for t, link, frame in lines:
            raw = frame if isinstance(frame, str) else orjson.dumps(frame).decode()
            f.write(orjson.dumps({"t": t, "link": link, "raw": raw}) + b"\n")
        if trailer:
            f.write(orjson.dumps({"end": 99.0, "frames": len(lines)}) + b"\n")
    return path
