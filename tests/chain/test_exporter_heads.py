"""The exporter's four heads, started from its flags against the simulator's chain: what it exports equals
what the simulator's ground truth (/control/truth, chain section) says the chain, REST and each link are;
a lagging link is seen as that link alone; a node on another network stops the exporter at start (exit 2);
without --chain.rpc-url no chain series exist. About 10 s."""

from __future__ import annotations

import asyncio
from asyncio.subprocess import PIPE, STDOUT
from typing import Any

import aiohttp
import pytest

from exporter.config import Settings
from exporter.service import Exporter
from exporter.simulator.server import Simulator
from tests.fixtures.exporter import ExporterFactory, start_exporter_process
from tests.fixtures.simulator import SimulatorFactory, control
from tests.helpers import Samples, find_binary, metric_value, scrape, wait_for

pytestmark = pytest.mark.timeout(60)

MARKETS = ("BTC-USD", "ETH-USD", "SOL-USD")


def argv(sim: Simulator, *extra: str) -> list[str]:
    return [
        "--web.listen-address=127.0.0.1:0",
        f"--dydx.ws-url={sim.ws_url}",
        f"--dydx.rest-url={sim.base_url}",
        f"--markets={','.join(MARKETS)}",
        "--feed.max-subscriptions=2",  # two links for three markets
        "--feed.backoff-initial=50ms",
        "--feed.backoff-max=500ms",
        "--feed.silence-timeout=10s",
        "--chain.poll-interval=100ms",
        "--rest.height-interval=100ms",
        "--log.format=json",
        *extra,
    ]


def heads(samples: Samples) -> dict[str, Any]:
    links = {
        dict(labels)["connection"]: value
        for (name, labels), value in samples.items()
        if name == "dydx_link_block_height"
    }
    return {
        "chain": metric_value(samples, "dydx_chain_block_height", rpc="127.0.0.1"),
        "up": metric_value(samples, "dydx_chain_rpc_up", rpc="127.0.0.1"),
        "catching_up": metric_value(samples, "dydx_chain_catching_up", rpc="127.0.0.1"),
        "ws": metric_value(samples, "dydx_block_height"),
        "rest": metric_value(samples, "dydx_rest_block_height"),
        "links": links,
    }


async def start(
    simulator_factory: SimulatorFactory, exporter_factory: ExporterFactory, *extra: str, rpc: bool = True
) -> tuple[Simulator, Exporter]:
    sim = await simulator_factory(markets=list(MARKETS), block_time=0.1, rate=0.2, chain_rpc_port=0)
    flags = [f"--chain.rpc-url={sim.chain_rpc_url}"] if rpc else []
    exporter = await exporter_factory(Settings.from_sources(argv(sim, *flags, *extra), {}))
    return sim, exporter


async def test_exported_heads_equal_the_simulators_truth(
    simulator_factory: SimulatorFactory, exporter_factory: ExporterFactory
) -> None:
    sim, exporter = await start(simulator_factory, exporter_factory)
    await wait_for(lambda: sim.open_sessions() and len(sim.open_sessions()) == 2, timeout=10)
    await wait_for(lambda: len(sim.chain.feed.heads) > 5, timeout=10)  # REST can trail by 3 blocks
    await control(sim, "POST", "/control/faults", {"kind": "rest_lag", "blocks": 3})
    await control(sim, "POST", "/control/pause")  # the chain stops where it is: every head settles
    truth = (await control(sim, "GET", "/control/truth"))["chain"]

    async def settled() -> dict[str, Any] | None:
        now = heads(await scrape(exporter.metrics_url))
        want = {
            "chain": truth["chain"]["height"],
            "up": 1,
            "catching_up": 0,
            "ws": truth["indexer"]["height"],
            "rest": truth["rest"]["height"],
            "links": {"conn-0": truth["indexer"]["height"], "conn-1": truth["indexer"]["height"]},
        }
        return now if now == want else None

    await wait_for(settled, timeout=10, interval=0.1, message=f"exported heads equal {truth}")
    assert truth["rest"]["height"] == truth["indexer"]["height"] - 3, truth
    # Every new family, populated, is clean Prometheus exposition.
    async with aiohttp.ClientSession() as session, session.get(exporter.metrics_url) as resp:
        body = await resp.read()
    assert b'dydx_chain_rpc_request_duration_seconds_bucket{rpc="127.0.0.1",le="+Inf"}' in body
    promtool = await asyncio.create_subprocess_exec(
        find_binary("promtool"), "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
    )
    said, _ = await asyncio.wait_for(promtool.communicate(body), timeout=30)
    assert promtool.returncode == 0 and not said.strip(), said


async def test_a_lagging_link_is_that_link_alone(
    simulator_factory: SimulatorFactory, exporter_factory: ExporterFactory
) -> None:
    sim, exporter = await start(simulator_factory, exporter_factory)
    await wait_for(lambda: sim.open_sessions() and len(sim.open_sessions()) == 2, timeout=10)
    await control(sim, "POST", "/control/faults", {"kind": "link_lag", "connection": "1", "seconds": 2})

    async def one_behind() -> dict[str, Any] | None:
        now = heads(await scrape(exporter.metrics_url))
        links = now["links"]
        if len(links) == 2 and max(links.values()) - min(links.values()) >= 10:
            return now
        return None

    now = await wait_for(one_behind, timeout=10, interval=0.1, message="one link 10+ blocks behind")
    assert now["ws"] == max(now["links"].values())  # dydx_block_height is the freshest link
    assert now["chain"] - now["ws"] <= 5  # the indexer itself is not behind


async def test_a_node_on_another_network_stops_the_exporter_with_status_2(
    simulator_factory: SimulatorFactory,
) -> None:
    sim = await simulator_factory(markets=1, block_time=0.1, chain_rpc_port=0, network="dydx-testnet-4")
    process = await start_exporter_process(sim, f"--chain.rpc-url={sim.chain_rpc_url}")
    try:
        code = await asyncio.wait_for(process.proc.wait(), timeout=20)
    finally:
        await process.close()
    assert code == 2
    stderr = "".join(e["line"] for e in process.events if e["event"] == "raw")
    assert "dydx-exporter: error: --chain.rpc-url: 127.0.0.1 is on network 'dydx-testnet-4'" in stderr
    assert "'dydx-mainnet-1'" in stderr


async def test_without_a_chain_rpc_no_chain_series_exist(
    simulator_factory: SimulatorFactory, exporter_factory: ExporterFactory
) -> None:
    _, exporter = await start(simulator_factory, exporter_factory, rpc=False)

    async def rest_known() -> Samples | None:
        samples = await scrape(exporter.metrics_url)
        return samples if metric_value(samples, "dydx_rest_block_height") else None

    samples = await wait_for(rest_known, timeout=10, interval=0.1)
    assert samples is not None
    assert [name for name, _ in samples if name.startswith("dydx_chain_")] == []
