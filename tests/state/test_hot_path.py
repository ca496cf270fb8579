"""The hot path's shortcuts behave exactly like the slow paths they skip."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from exporter.loop import let_io_in
from exporter.state.msgids import MessageIds


def _hot_path_see(ids: MessageIds, message_id: int, now: float) -> bool:
    """What Router.handle does with a data frame's id."""
    if message_id == ids.fast_next:
        ids.fast_next = message_id + 1
        return True
    return ids.see(message_id, now)


@pytest.mark.parametrize("seed", range(20))
def test_message_id_fast_path_matches_see(seed: int) -> None:
    rng = random.Random(seed)
    plain, fast = MessageIds(grace_seconds=1.0), MessageIds(grace_seconds=1.0)
    now, next_id = 0.0, 0
    for _ in range(3000):
        now += rng.random() * 0.01
        roll = rng.random()
        if roll < 0.02:
            next_id += rng.randint(1, 5)  # frames lost
        elif roll < 0.04:
            late = max(0, next_id - rng.randint(1, 20))  # a late `subscribed`, or a reused id
            assert plain.see(late, now) == _hot_path_see(fast, late, now)
            continue
        elif roll < 0.045:
            plain.reset()
            fast.reset()
            next_id = rng.choice((0, rng.randint(1, 100)))  # reconnected, or joined mid-stream
        assert plain.see(next_id, now) == _hot_path_see(fast, next_id, now)
        next_id += 1
    plain.sweep(now + 5.0)
    fast.sweep(now + 5.0)
    assert plain.lost == fast.lost > 0
    assert plain.open_holes == fast.open_holes == 0


async def test_let_io_in_runs_due_timers_before_the_next_slice() -> None:
    """A task that works in slices separated by let_io_in() lets a ticker in after at most one slice."""
    stop = asyncio.Event()
    slice_s = 0.002

    async def busy() -> None:
        while not stop.is_set():
            end = time.perf_counter() + slice_s
            while time.perf_counter() < end:
                pass
            await let_io_in()

    worker = asyncio.create_task(busy())
    late: list[float] = []
    try:
        for _ in range(20):
            asked = time.perf_counter()
            await asyncio.sleep(0.0005)
            late.append(time.perf_counter() - asked - 0.0005)
    finally:
        stop.set()
        await worker
    late.sort()
    # One slice (2 ms) at most, plus scheduling noise on a shared machine: the median is what is stable.
    assert late[len(late) // 2] < 2 * slice_s
