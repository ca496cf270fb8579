"""permessage-deflate end to end: the exporter (the real CLI, with --feed.compression) against simulators
compressing 0 %, 100 % and 50 % of offering connections (mixed per connection, a seeded draw) exports
exactly the simulator's ground truth in each, with no invalid frame; the simulator's status shows which
of the exporter's links were compressed. About 6 s, the three side by side."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from exporter.protocol import channels as ch
from tests.fixtures.simulator import SimulatorFactory
from tests.groundtruth.support import CliExporter, report
from tests.groundtruth.test_equality import scenario
from tests.helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CHANNELS = (ch.MARKETS, ch.TRADES, ch.ORDERBOOK, ch.BLOCK_HEIGHT)


async def test_same_truth_compressed_or_not(simulator_factory: SimulatorFactory) -> None:
    # Seed 3 draws compress, plain, compress, plain for the first four connections at 50 %.
    sims = {
        percent: await simulator_factory(markets=8, block_time=0.2, seed=3, compression_percent=percent)
        for percent in (0, 100, 50)
    }
    statuses: dict[int, dict[str, Any]] = {}

    async def run(percent: int) -> Any:
        sim = sims[percent]

        async def start() -> CliExporter:
            # Two markets per link: four links, so a 50 % simulator mixes them.
            exp = await CliExporter.start(sim, "--feed.compression", "--feed.max-subscriptions=2")
            statuses[percent] = await wait_for(
                lambda: (status := sim.status())["connections"] >= 4 and status, message="four links"
            )
            return exp

        return await scenario(f"{percent:.0f} %", sim, start, tuple(sim.source.tickers()), CHANNELS)

    outcomes = await asyncio.gather(*(run(percent) for percent in sims))
    for outcome in outcomes:
        assert not outcome.problems, f"{outcome.name}: {report(outcome.problems)}"
        assert not outcome.invalid_logs, f"{outcome.name}: {outcome.invalid_logs[:3]}"
        assert outcome.truth["updates_delivered"][ch.ORDERBOOK] > 100, outcome.name
    connections = {p: s["connections"] for p, s in statuses.items()}
    compressed = {p: s["compressed_connections"] for p, s in statuses.items()}
    assert all(n >= 4 for n in connections.values()), connections
    assert compressed[0] == 0 and compressed[100] == connections[100], (compressed, connections)
    assert 0 < compressed[50] < connections[50], (compressed, connections)
