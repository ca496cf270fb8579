"""The exporter (the real CLI, a child process) against the newer socks behaviour of the protocol
reference §6: after a 4008 it stays away at least `retryAfterSeconds`; a penalty 429 is honoured and
counted as `penalized`, the simulator's refusals equal the exporter's count; with the abuse rule on, 600
markets through reconnects and market churn never earn a cap hit, let alone a 4008. 18-40 s on
a loaded machine, the three side by side."""

from __future__ import annotations

import asyncio
import time

import pytest

from exporter.simulator.server import Simulator
from tests.fixtures.simulator import SimulatorFactory, control
from tests.fixtures.support import wait_ready
from tests.groundtruth.support import CliExporter
from tests.helpers import metric_sum, metric_value, scrape, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

DISCONNECTS_4008 = ("dydx_ws_disconnects_total", {"code": "4008"})


async def exported(exp: CliExporter, name: str, **labels: str) -> float | None:
    return metric_value(await scrape(exp.metrics_url), name, **labels)


async def links_up(exp: CliExporter) -> float:
    return metric_sum(await scrape(exp.metrics_url), "dydx_ws_connected")


async def penalty_after_4008(sim: Simulator) -> None:
    exp = await CliExporter.start(sim, "--feed.backoff-max=500ms")
    try:
        await wait_ready(exp)
        assert await exported(exp, "dydx_ws_disconnects_total", code="4008") == 0, "exists at zero"
        assert await exported(exp, "dydx_ws_errors_total", reason="subscription_limit_abuse") == 0
        assert await exported(exp, "dydx_ws_connection_failures_total", reason="penalized") == 0
        links = await links_up(exp)
        opened = sim.stats.connections_opened
        began = time.monotonic()
        await control(sim, "POST", "/control/faults", {"kind": "penalty", "seconds": 2})
        await wait_for(lambda: sim.stats.connections_opened > opened, timeout=10, message="reconnect")
        waited = time.monotonic() - began
        assert waited >= 2.0, f"a link reconnected {waited:.2f}s after a 4008 asking for 2s"
        assert sim.stats.handshakes_rejected == 0, "never knocked while penalized"
        assert await exported(exp, "dydx_ws_disconnects_total", code="4008") == links
        assert await exported(exp, "dydx_ws_errors_total", reason="subscription_limit_abuse") == links
        assert await exported(exp, "dydx_ws_errors_total", reason="other") == 0
        await wait_ready(exp)
    finally:
        assert await exp.stop() == 0


async def penalty_429(sim: Simulator) -> None:
    """A penalty the exporter did not see coming (another client on its address earned it): its links
    are dropped (1012), knock, get 429 with Retry-After: 2 and wait that long instead of backing off
    500 ms at most; each refusal is counted `penalized`, exactly as many as the simulator gave."""
    exp = await CliExporter.start(sim, "--feed.backoff-max=500ms", "--feed.max-subscriptions=2")
    try:
        await wait_ready(exp)
        links = await links_up(exp)
        assert links >= 2
        sim.penalties.penalize("127.0.0.1", 2.0)
        began = time.monotonic()
        await control(sim, "POST", "/control/faults", {"kind": "disconnect", "code": 1012})
        # /readyz may still say ready before the drops are seen: first every link knocks and is refused.
        await wait_for(
            lambda: sim.stats.handshakes_rejected >= links, timeout=10, message="each link refused"
        )
        await wait_ready(exp, timeout=15)
        took = time.monotonic() - began
        samples = await scrape(exp.metrics_url)
        penalized = metric_value(samples, "dydx_ws_connection_failures_total", reason="penalized")
        assert penalized == sim.stats.handshakes_rejected, "each refusal counted once, as penalized"
        # Honouring Retry-After: one refusal per link (backing off 500 ms would knock about 4 times).
        assert links <= penalized <= links + 1, (penalized, links)
        assert metric_value(samples, "dydx_ws_connection_failures_total", reason="http_429") == 0
        assert took >= 1.9, f"ready again after {took:.2f}s, inside the 2s penalty"
    finally:
        assert await exp.stop() == 0


async def six_hundred_markets(sim: Simulator) -> None:
    exp = await CliExporter.start(sim, "--feed.backoff-max=500ms", "--discovery.interval=2s")
    try:
        await wait_ready(exp, timeout=60)
        assert await links_up(exp) >= 19, "600 markets take 19 links of 32 per channel"
        tickers = sim.source.tickers()
        # Churn: 4 listings (socks learns them 0.5 s late) and 2 delistings, then two drops in a row.
        for n in range(4):
            await control(sim, "POST", "/control/markets", {"list": f"NEW{n}-USD", "ws_delay": 0.5})
        for ticker in tickers[-2:]:
            await control(sim, "POST", "/control/markets", {"delist": ticker})
        opened = sim.stats.connections_opened
        await control(sim, "POST", "/control/faults", {"kind": "disconnect", "code": 1012})
        await wait_for(lambda: sim.stats.connections_opened > opened, timeout=10, message="a link back")
        await control(sim, "POST", "/control/faults", {"kind": "disconnect", "abrupt": True})

        async def churned() -> bool:
            samples = await scrape(exp.metrics_url)
            states = {
                state: metric_value(samples, "dydx_subscriptions", channel="v4_trades", state=state)
                for state in ("active", "pending", "failed")
            }
            return states == {"active": 602, "pending": 0, "failed": 0}

        await wait_for(churned, timeout=60, interval=0.5, message="602 markets active after the churn")
        await wait_ready(exp, timeout=30)
        samples = await scrape(exp.metrics_url)
        assert metric_value(samples, "dydx_ws_disconnects_total", code="4008") == 0
        assert metric_value(samples, "dydx_ws_errors_total", reason="subscription_limit") == 0, "no cap hit"
        assert metric_value(samples, "dydx_ws_connection_failures_total", reason="penalized") == 0
        assert sim.stats.closes.get("4008", 0) == 0 and sim.stats.handshakes_rejected == 0
    finally:
        assert await exp.stop() == 0


async def test_penalties_are_honoured_and_never_earned(simulator_factory: SimulatorFactory) -> None:
    penalized = await simulator_factory(markets=3, subscription_limit_abuse=True)
    refusing = await simulator_factory(markets=6, subscription_limit_abuse=True)
    crowded = await simulator_factory(
        markets=600, subscription_limit_abuse=True, block_time=0.5, rate=0.3, ping_interval=2.0
    )
    await asyncio.gather(penalty_after_4008(penalized), penalty_429(refusing), six_hundred_markets(crowded))
