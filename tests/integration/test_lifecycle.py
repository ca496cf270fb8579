"""`python -m exporter` as a real process: it serves, and SIGTERM/SIGINT end it cleanly within 5 s."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest

from tests.helpers import metric_sum, metric_value, scrape, wait_for

pytestmark = pytest.mark.timeout(60)


class ExporterProcess:
    """`python -m exporter` pointed at a simulator, with its JSON log events collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read_logs())

    async def _read_logs(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            try:
                self.events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                self.events.append({"event": "raw", "line": line.decode(errors="replace")})

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.gather(self._reader, return_exceptions=True)


@pytest.fixture
async def exporter_process() -> AsyncIterator[Callable[..., Awaitable[ExporterProcess]]]:
    started: list[ExporterProcess] = []

    async def start(sim: Any, *extra: str) -> ExporterProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DYDX_EXPORTER_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "exporter",
            "--web.listen-address=127.0.0.1:0",
            f"--dydx.ws-url={sim.ws_url}",
            f"--dydx.rest-url={sim.base_url}",
            "--log.format=json",
            "--feed.backoff-max=1s",
            *extra,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        started.append(ExporterProcess(proc))
        return started[-1]

    try:
        yield start
    finally:
        for process in started:
            await process.close()


def _event(events: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((e for e in events if e.get("event") == name), None)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_unsubscribes_and_exits_0_within_5s(simulator_factory, exporter_process, sig):
    sim = await simulator_factory(markets=3, block_time=0.1)
    exporter = await exporter_process(sim)
    proc, events = exporter.proc, exporter.events
    started = await wait_for(
        lambda: _event(events, "exporter_started"), timeout=20, message="exporter_started"
    )
    assert started is not None
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
    assert _event(events, "exporter_stopped") is not None
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
