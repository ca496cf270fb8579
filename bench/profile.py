"""`python -m bench.profile`: where the pipeline's time goes, without sockets.

Feeds the workload's frames straight to `Processor.handle` in this process and reports, per update: the
cost of orjson.loads alone (what the bare loop pays after receipt), of the whole `handle`, and a cProfile
of `handle` sorted by own time. The receive cost (aiohttp) is the ingest table's `bare` row minus decode.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Sequence

import orjson

from bench.consumers import LINK, build_pipeline
from bench.workload import Workload, decoded_cycle


def prepare(workload: Workload) -> tuple[object, list[str], int]:
    """A pipeline with every subscription applied, the cycle's payloads as str, and updates per pass."""
    processor, _ = build_pipeline(workload)
    handle = processor.handle
    handle(LINK, workload.connected_frame(), time.time())
    for message_id, sub in enumerate(workload.subscriptions, start=1):
        handle(LINK, workload.subscribed_frame(sub, message_id), time.time())
    return processor, [], workload.cycle_update_total


def payload_passes(workload: Workload, passes: int) -> list[str]:
    """`passes` runs of the cycle with increasing message ids, decoded to str as aiohttp hands them over."""
    first = len(workload.subscriptions) + 1
    frames: list[str] = []
    for n in range(passes):
        frames.extend(p.decode() for p in decoded_cycle(workload, first + n * len(workload.cycle)))
    return frames


def measure(workload: Workload, passes: int, top: int) -> str:
    processor, _, updates_per_pass = prepare(workload)
    frames = payload_passes(workload, passes)
    updates = updates_per_pass * passes
    handle = processor.handle  # type: ignore[attr-defined]
    now = time.time

    t0 = time.process_time()
    for raw in frames:
        orjson.loads(raw)
    decode_s = time.process_time() - t0

    # Warm: books and trade-id sets at their steady size before timing. Each third is handled once, so
    # message ids stay in order and trades stay new in the timed and the profiled part.
    third = len(frames) // 3
    for raw in frames[:third]:
        handle(LINK, raw, now())
    t0 = time.process_time()
    for raw in frames[third : 2 * third]:
        handle(LINK, raw, now())
    handle_s = (time.process_time() - t0) * len(frames) / third

    profiler = cProfile.Profile()
    profiler.enable()
    for raw in frames[2 * third :]:
        handle(LINK, raw, now())
    profiler.disable()
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(top)
    lines = [
        f"workload: {workload.markets} markets, batched={workload.batched}, mix={workload.mix},"
        f" {len(frames):,} frames, {updates:,} updates",
        f"orjson.loads alone: {decode_s / updates * 1e6:.3f} µs/update",
        f"Processor.handle:   {handle_s / updates * 1e6:.3f} µs/update",
        f"handle minus decode: {(handle_s - decode_s) / updates * 1e6:.3f} µs/update",
        "",
        "cProfile of Processor.handle (last third of the frames), by own time:",
        stream.getvalue(),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--markets", type=int, default=32)
    parser.add_argument("--batched", action="store_true")
    parser.add_argument("--mix", default="realistic")
    parser.add_argument("--passes", type=int, default=8, help="passes over the ~16k-update cycle")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    from exporter.logs import configure

    configure(level="warn", fmt="json")
    workload = Workload(markets=args.markets, batched=args.batched, mix=args.mix)
    print(measure(workload, args.passes, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
