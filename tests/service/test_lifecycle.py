"""`python -m exporter` as a real process: it serves, and SIGTERM/SIGINT end it cleanly within 5 s."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.fixtures.exporter import start_exporter_process
from tests.helpers import LoggedProcess, metric_sum, metric_value, scrape, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def exporter_process() -> AsyncIterator[Callable[..., Awaitable[LoggedProcess]]]:
    started: list[LoggedProcess] = []

    async def start(sim: Any, *extra: str) -> LoggedProcess:
        started.append(await start_exporter_process(sim, "--feed.backoff-max=1s", *extra))
        return started[-1]

    try:
        yield start
    finally:
        for process in started:
            await process.close()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_unsubscribes_and_exits_0_within_5s(simulator_factory, exporter_process, sig):
    sim = await simulator_factory(markets=3, block_time=0.1)
    exporter = await exporter_process(sim)
    proc, events = exporter.proc, exporter.events
    started = await exporter.wait_event("exporter_started")
    metrics_url = started["url"] + "/metrics"

    async def subscribed() -> Any:
        samples = await scrape(metrics_url)
        return metric_value(samples, "dydx_subscriptions", channel="v4_trades", state="active") == 3

    await wait_for(subscribed, timeout=15, message="trades subscribed")
    began = time.monotonic()
    proc.send_signal(sig)
    code = await asyncio.wait_for(proc.wait(), timeout=5.0)
    took = time.monotonic() - began
    assert code == 0, f"exit status {code}; last logs: {events[-5:]}"
    assert took < 5.0
    await exporter.wait_event("exporter_stopped", timeout=5)
    ground_truth = await scrape(sim.base_url + "/metrics")
    # Unsubscribed before closing: the server answered an unsubscribe for every trades subscription.
    assert (
        metric_sum(ground_truth, "dydx_simulator_frames_sent_total", channel="v4_trades", type="unsubscribed")
        >= 3
    )
    assert not [e for e in events if e.get("level") == "error"], events


async def test_bad_flag_exits_2_naming_it(simulator_factory, exporter_process):
    sim = await simulator_factory(markets=1, block_time=0.5)
    exporter = await exporter_process(sim, "--channels=v4_nope")
    assert await asyncio.wait_for(exporter.proc.wait(), timeout=20) == 2
    await exporter.close()  # the log reader has drained stderr
    text = " ".join(str(e) for e in exporter.events)
    assert "--channels" in text and "v4_nope" in text
