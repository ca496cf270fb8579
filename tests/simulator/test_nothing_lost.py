"""Started paused, resumed for a while and paused again: a consumer subscribed to every market's trades has
received exactly what the ground truth says was published (and no trade twice)."""

from __future__ import annotations

import asyncio

import pytest

from exporter.protocol import channels as ch
from exporter.simulator.server import Simulator
from tests.fixtures.simulator import SimulatorFactory, control
from tests.helpers import metric_sum, scrape, wait_for
from tests.simulator.conftest import ProbeFactory
from tests.simulator.probe import Probe

pytestmark = pytest.mark.timeout(30)


def received_trades(probe: Probe) -> list[str]:
    ids: list[str] = []
    for frame in probe.frames:
        if frame.get("channel") != ch.TRADES:
            continue
        if frame["type"] == "channel_data":
            ids += [t["id"] for t in frame["contents"]["trades"]]
        elif frame["type"] == "channel_batch_data":
            ids += [t["id"] for contents in frame["contents"] for t in contents["trades"]]
    return ids


async def wait_trades(probe: Probe, count: float) -> None:
    await wait_for(lambda: len(received_trades(probe)) >= count, message=f"{count} trades received")


async def published(sim: Simulator) -> float:
    return metric_sum(await scrape(sim.base_url + "/metrics"), "dydx_simulator_trades_published_total")


async def test_paused_resumed_paused_nothing_lost(
    simulator_factory: SimulatorFactory, probes: ProbeFactory
) -> None:
    sim = await simulator_factory(markets=12, block_time=0.05, rate=8, paused=True)
    plain, batched = await probes(sim), await probes(sim)
    for ticker in sim.source.tickers():
        await plain.subscribe(ch.TRADES, ticker)
        await batched.subscribe(ch.TRADES, ticker, batched=True)
    await wait_for(lambda: len(plain.of_type("subscribed")) == len(batched.of_type("subscribed")) == 12)
    assert await published(sim) == 0, "nothing is published while paused"
    for _ in range(2):  # paused → resumed → paused, twice
        await control(sim, "POST", "/control/resume")
        await asyncio.sleep(0.8)
        await control(sim, "POST", "/control/pause")
        truth = await published(sim)
        for probe in (plain, batched):
            await wait_trades(probe, truth)
    truth = await published(sim)
    assert truth > 50, "the run produced a meaningful number of trades"
    await asyncio.sleep(2 * sim.config.batch_interval)
    for probe in (plain, batched):
        ids = received_trades(probe)
        assert len(ids) == truth and len(set(ids)) == len(ids)
    per_market = {
        t: metric_sum(
            await scrape(sim.base_url + "/metrics"), "dydx_simulator_trades_published_total", market=t
        )
        for t in sim.source.tickers()
    }
    counted: dict[str, int] = {}
    for frame in plain.of_type("channel_data"):
        counted[frame["id"]] = counted.get(frame["id"], 0) + len(frame["contents"]["trades"])
    assert {t: n for t, n in per_market.items() if n} == {t: float(n) for t, n in counted.items()}
