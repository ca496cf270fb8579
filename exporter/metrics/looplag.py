"""Event-loop lag: how late the loop wakes a periodic sleeper, observed in
dydx_exporter_event_loop_lag_seconds. Anything that holds the loop (a slow scrape, a huge snapshot, a
burst of frames) shows up here, and with it a hole in the latency the exporter reports."""

from __future__ import annotations

import asyncio
import time

from exporter.lifecycle import BackgroundTask
from exporter.metrics.collector import Collector


class LoopLagProbe:
    def __init__(self, collector: Collector, *, interval: float = 0.25) -> None:
        self._histogram = collector.loop_lag
        self._interval = interval
        self._task = BackgroundTask("loop-lag-probe")

    async def start(self) -> None:
        self._task.start(self._run)

    async def stop(self) -> None:
        await self._task.stop()

    async def _run(self) -> None:
        interval = self._interval
        observe = self._histogram.observe
        while True:
            due = time.perf_counter() + interval
            await asyncio.sleep(interval)
            late = time.perf_counter() - due
            observe(late if late > 0.0 else 0.0)
