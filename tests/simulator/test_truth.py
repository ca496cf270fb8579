"""Ground truth at /metrics: the simulator's own registry, clean under `promtool check metrics`, and
counting what clients actually got."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from exporter.protocol import channels as ch
from exporter.simulator.server import Simulator
from tests.fixtures.simulator import control
from tests.helpers import find_binary, kill_if_running, metric_sum, metric_value, parse_metrics, wait_for
from tests.simulator.conftest import ProbeFactory

pytestmark = pytest.mark.timeout(30)


async def metrics_text(sim: Simulator) -> str:
    async with aiohttp.ClientSession() as session, session.get(sim.base_url + "/metrics") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        return await resp.text()


async def test_promtool_accepts_the_ground_truth(simulator: Simulator, probes: ProbeFactory) -> None:
    probe = await probes(simulator)
    await probe.subscribe(ch.TRADES, "BTC-USD")
    await probe.send("garbage")
    await control(simulator, "POST", "/control/faults", {"kind": "stall", "channel": ch.CANDLES})
    await probe.next_type("subscribed")
    text = await metrics_text(simulator)
    promtool = await asyncio.create_subprocess_exec(
        find_binary("promtool"), "check", "metrics",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(promtool.communicate(text.encode()), 20)
    finally:
        await kill_if_running(promtool)
    assert promtool.returncode == 0, output.decode()
    assert output.decode().strip() == "", output.decode()


async def test_frames_sent_match_what_a_client_received(simulator: Simulator, probes: ProbeFactory) -> None:
    probe = await probes(simulator)
    await probe.subscribe(ch.BLOCK_HEIGHT)
    await probe.subscribe(ch.ORDERBOOK, "BTC-USD")
    await probe.subscribe(ch.ORDERBOOK, "ETH-USD", batched=True)
    await wait_for(lambda: len(probe.of_type("channel_batch_data")) >= 2)
    await control(simulator, "POST", "/control/pause")
    await asyncio.sleep(2 * simulator.config.batch_interval)
    samples = parse_metrics(await metrics_text(simulator))
    assert metric_value(samples, "dydx_simulator_connections") == 1
    assert metric_value(samples, "dydx_simulator_paused") == 1
    assert metric_value(samples, "dydx_simulator_subscriptions", channel=ch.ORDERBOOK) == 2
    for frame_type in ("connected", "subscribed", "channel_data", "channel_batch_data"):
        sent = metric_sum(samples, "dydx_simulator_frames_sent_total", type=frame_type)
        assert sent == len(probe.of_type(frame_type)), frame_type
    assert metric_value(samples, "dydx_simulator_block_height") == simulator.source.height()[0]
