"""`python -m exporter` stops cleanly on SIGTERM whatever its feed is doing: under a high message rate, while
waiting out a 429 Retry-After, with every snapshot pending, against a server that accepted and never
speaks. Exit status 0 within 5 s, no error logged, and nothing left behind on the server's side.

tests/service/test_lifecycle.py covers a quiet feed (SIGTERM and SIGINT, unsubscribe before close).
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest

from exporter.protocol import channels as ch
from tests.fixtures.exporter import start_exporter_process
from tests.fixtures.simulator import control
from tests.helpers import LoggedProcess, metric_sum, metric_value, scrape, wait_for
from tests.reliability.support import truth

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

DISCONNECT = {"kind": "disconnect", "code": 1012}


async def _start(sim: Any, *extra: str) -> LoggedProcess:
    return await start_exporter_process(sim, "--feed.backoff-max=1s", "--feed.handshake-timeout=30s", *extra)


async def _sigterm_exits_0_within_5s(exporter: LoggedProcess, sim: Any) -> float:
    began = time.monotonic()
    exporter.proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(exporter.proc.wait(), timeout=5.0)
    took = time.monotonic() - began
    await exporter.close()
    assert code == 0, f"exit status {code}; last logs: {exporter.events[-5:]}"
    errors = [e for e in exporter.events if e.get("level") == "error"]
    assert not errors, errors

    async def no_connections() -> bool:
        return metric_value(await truth(sim), "dydx_simulator_connections") == 0

    await wait_for(no_connections, timeout=5, message="every connection closed on the server side")
    return took


async def test_sigterm_under_a_high_message_rate(simulator_factory):
    sim = await simulator_factory(markets=30, block_time=0.05, rate=5.0)
    exporter = await _start(sim)
    try:
        started = await exporter.wait_event("exporter_started")
        metrics_url = str(started["url"]) + "/metrics"

        async def busy() -> bool:
            samples = await scrape(metrics_url)
            return metric_sum(samples, "dydx_updates_total", channel=ch.ORDERBOOK) > 2000

        await wait_for(busy, timeout=20, message="a busy feed")
        took = await _sigterm_exits_0_within_5s(exporter, sim)
        assert took < 5.0
        closes = await truth(sim)
        assert metric_sum(closes, "dydx_simulator_connections_closed_total", code="1000") >= 1
    finally:
        await exporter.close()


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param(({"kind": "reject", "seconds": 30, "retry_after": 20}, DISCONNECT), id="in-retry-after"),
        pytest.param(({"kind": "rest_slow", "seconds": 30, "delay": 4.5}, DISCONNECT), id="mid-snapshot"),
        pytest.param(({"kind": "silent", "seconds": 30}, DISCONNECT), id="server-silent"),
    ],
)
async def test_sigterm_mid_reconnect(simulator_factory, faults):
    sim = await simulator_factory(markets=3, block_time=0.1)
    exporter = await _start(sim)
    try:
        started = await exporter.wait_event("exporter_started")
        metrics_url = str(started["url"]) + "/metrics"

        async def subscribed() -> bool:
            samples = await scrape(metrics_url)
            return metric_value(samples, "dydx_subscriptions", channel=ch.TRADES, state="active") == 3

        await wait_for(subscribed, timeout=20, message="subscribed")
        for fault in faults:
            await control(sim, "POST", "/control/faults", fault)

        async def reconnecting() -> bool:
            samples = await scrape(metrics_url)
            return metric_sum(samples, "dydx_ws_disconnects_total", code="1012") >= 1

        await wait_for(reconnecting, timeout=10, message="the link dropped")
        await asyncio.sleep(0.5)  # into the wait: Retry-After, the snapshot fetch, the silent handshake
        took = await _sigterm_exits_0_within_5s(exporter, sim)
        assert took < 5.0
    finally:
        await exporter.close()
