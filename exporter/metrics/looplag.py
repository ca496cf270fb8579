"""Event-loop lag: how late the loop wakes a periodic sleeper, observed in
dydx_exporter_event_loop_lag_seconds. Anything that holds the loop (a slow scrape, a huge snapshot, a
burst of frames) shows up here, and with it a hole in the latency the exporter reports."""

from __future__ import annotations

import asyncio
import time

from exporter.lifecycle import cancel_and_wait
from exporter.metrics.collector import Collector


class LoopLagProbe:
    def __init__(self, collector: Collector, *, interval: float = 0.25) -> None:
        self._histogram = collector.loop_lag
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop-lag-probe")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        interval = self._interval
        observe = self._histogram.observe
        while True:
            due = time.perf_counter() + interval
            await asyncio.sleep(interval)
            late = time.perf_counter() - due
            observe(late if late > 0.0 else 0.0)
