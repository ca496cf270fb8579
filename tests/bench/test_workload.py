"""The benchmark's frames are what the indexer sends and what the exporter accepts, or its numbers lie."""

from __future__ import annotations

import struct
import time
from typing import Any

import orjson
import pytest

from bench.consumers import LINK, build_pipeline, pipeline_problems
from bench.workload import CHUNK_FRAMES, FrameStream, Workload, decoded_cycle
from exporter.protocol import channels as ch
from tests.helpers import metric_sum, parse_metrics


def split_ws_frames(data: bytes) -> list[dict[str, Any]]:
    """Parse unmasked server-to-client text frames back into JSON objects, checking every length."""
    frames = []
    i = 0
    while i < len(data):
        assert data[i] == 0x81, "final text frame"
        length = data[i + 1]
        i += 2
        if length == 126:
            (length,) = struct.unpack("!H", data[i : i + 2])
            i += 2
        elif length == 127:
            (length,) = struct.unpack("!Q", data[i : i + 8])
            i += 8
        frames.append(orjson.loads(data[i : i + length]))
        i += length
    assert i == len(data)
    return frames


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("first_id", [1, 10_000 - CHUNK_FRAMES // 2])
def test_stream_frames_are_well_formed_with_consecutive_message_ids(batched: bool, first_id: int) -> None:
    workload = Workload(markets=5, batched=batched, cycle_updates=2_000)
    stream = FrameStream(workload, first_id)
    frames = split_ws_frames(b"".join(stream.next_chunk() for _ in range(3)))
    assert [f["message_id"] for f in frames] == list(range(first_id, first_id + 3 * CHUNK_FRAMES))
    data_type = ch.T_CHANNEL_BATCH_DATA if batched else ch.T_CHANNEL_DATA
    for f in frames:
        assert list(f)[:3] == ["type", "connection_id", "message_id"], "the indexer's key order"
        assert f["version"] == ch.VERSIONS[str(f["channel"])]
        if f["channel"] != ch.BLOCK_HEIGHT:
            assert f["type"] == data_type
    updates = sum(len(f["contents"]) if f["type"] == ch.T_CHANNEL_BATCH_DATA else 1 for f in frames)
    assert updates == stream.updates
    trade_ids = [t["id"] for f in frames if f["channel"] == ch.TRADES for t in _trades(f)]
    assert trade_ids and len(set(trade_ids)) == len(trade_ids), "trade ids never repeat"


def _trades(frame: dict[str, Any]) -> list[dict[str, str]]:
    contents = frame["contents"]
    items = contents if isinstance(contents, list) else [contents]
    return [t for item in items for t in item["trades"]]


def test_paced_frames_and_chunks_continue_one_id_sequence() -> None:
    workload = Workload(markets=3, cycle_updates=500)
    stream = FrameStream(workload, 7)
    paced = split_ws_frames(b"".join(stream.next_frames(10)))
    assert stream.updates == 10 == len(paced)
    chunked = split_ws_frames(stream.next_chunk())
    assert [f["message_id"] for f in paced + chunked] == list(range(7, 17 + CHUNK_FRAMES))


@pytest.mark.parametrize("batched", [False, True])
def test_the_exporter_pipeline_accepts_every_frame_and_counts_every_update(batched: bool) -> None:
    workload = Workload(markets=12, batched=batched, cycle_updates=3_000)
    processor, collector = build_pipeline(workload)
    processor.handle(LINK, workload.connected_frame(), time.time())
    for message_id, sub in enumerate(workload.subscriptions, start=1):
        processor.handle(LINK, workload.subscribed_frame(sub, message_id), time.time())
    for raw in decoded_cycle(workload, len(workload.subscriptions) + 1):
        processor.handle(LINK, raw, time.time())
    samples = parse_metrics(collector.render_text())
    assert metric_sum(samples, "dydx_messages_invalid_total") == 0
    assert metric_sum(samples, "dydx_message_id_gaps_total") == 0
    assert metric_sum(samples, "dydx_trades_duplicate_total") == 0
    assert metric_sum(samples, "dydx_updates_total") == workload.cycle_update_total
    # Every market is covered by one pass of the cycle: the scrape benchmark measures the full catalog.
    for ticker in workload.tickers:
        assert metric_sum(samples, "dydx_trades_total", market=ticker, side="buy") >= 1
        assert metric_sum(samples, "dydx_trades_total", market=ticker, side="sell") >= 1
        assert metric_sum(samples, "dydx_oracle_price", market=ticker) > 0


@pytest.mark.parametrize("batched", [False, True])
def test_counts_ok_holds_the_pipelines_books_to_what_the_source_sent(batched: bool) -> None:
    """`make bench`'s "counts ok": after a cycle and a half, every book equals the one the frames build,
    and a book that missed updates is reported (the check can fail)."""
    workload = Workload(markets=6, batched=batched, cycle_updates=2_000)
    processor, collector = build_pipeline(workload)
    processor.handle(LINK, workload.connected_frame(), time.time())
    for message_id, sub in enumerate(workload.subscriptions, start=1):
        processor.handle(LINK, workload.subscribed_frame(sub, message_id), time.time())
    cycle = len(workload.cycle)
    first = len(workload.subscriptions) + 1
    frames = [*decoded_cycle(workload, first), *decoded_cycle(workload, first + cycle)[: cycle // 2]]
    for raw in frames:
        processor.handle(LINK, raw, time.time())
    assert pipeline_problems(collector.registry, workload, len(frames)) == []
    missed = pipeline_problems(collector.registry, workload, 0)  # the books of the snapshots alone
    assert missed and all("levels" in p or "best" in p for p in missed)
