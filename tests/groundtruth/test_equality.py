"""The exporter, started as a user starts it, exports exactly what the simulator sent: for every market its
book levels, best bid and ask, oracle price, last trade price, trade counts, volume and notional, the block
height, subaccount equity and open orders, dydx_updates_total per channel equal to the updates delivered,
and not one invalid frame. Every channel (candles and subaccounts included), batched and unbatched, options
from argv, from a --config.file and from DYDX_EXPORTER_* variables; the three run side by side.

The exporter is the installed `dydx-exporter` console script (a child process); each scenario has its own
in-process simulator, paused before the comparison so the truth is exact.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.protocol import channels as ch
from exporter.simulator.server import Simulator
from tests.fixtures.simulator import SimulatorFactory
from tests.groundtruth.support import (
    CliExporter,
    differences,
    drained,
    exporter_argv,
    ground_truth,
    pause,
    report,
)
from tests.helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ALL_CHANNELS_FLAG = "v4_markets,v4_trades,v4_orderbook,v4_block_height"
SUBSET = ("BTC-USD", "SOL-USD", "DOGE-USD")
#: Order book updates each scenario takes before the comparison.
BOOK_UPDATES = 200


@dataclass
class Outcome:
    name: str
    problems: list[str]
    truth: dict[str, Any]
    invalid_logs: list[dict[str, Any]]


def subaccount_of(sim: Simulator) -> str:
    sub = sim.source.subaccounts[0]  # type: ignore[attr-defined]
    return f"{sub.address}/{sub.number}"


async def traffic(sim: Simulator, markets: tuple[str, ...], channels: tuple[str, ...]) -> None:
    """Until every market has traded, every channel has delivered something and the books have taken
    BOOK_UPDATES updates (a condition, not a nap)."""

    async def enough() -> bool:
        truth = await ground_truth(sim, markets)
        traded = all(m["last_trade"] for m in truth["markets"].values())
        delivered = truth["updates_delivered"]
        return traded and delivered[ch.ORDERBOOK] >= BOOK_UPDATES and all(delivered[c] for c in channels)

    message = "trades on every market, updates on every channel"
    await wait_for(enough, timeout=40, interval=0.3, message=message)


async def scenario(
    name: str,
    sim: Simulator,
    start: Any,
    markets: tuple[str, ...],
    channels: tuple[str, ...],
) -> Outcome:
    exporter: CliExporter = await start()
    try:
        await traffic(sim, markets, channels)
        await pause(sim)
        samples, truth = await drained(exporter.metrics_url, sim, markets)
        return Outcome(name, differences(samples, truth), truth, exporter.invalid_logs())
    finally:
        assert await exporter.stop() == 0, f"{name}: the exporter did not exit cleanly"


async def test_exporter_equals_the_simulators_truth(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    sims = [await simulator_factory(markets=8, block_time=0.2, rate=1.0, seed=seed) for seed in (3, 4, 5)]
    argv_sim, file_sim, env_sim = sims
    all_markets = tuple(argv_sim.source.tickers())
    every = (
        ch.MARKETS,
        ch.TRADES,
        ch.ORDERBOOK,
        ch.BLOCK_HEIGHT,
        ch.CANDLES,
        ch.SUBACCOUNTS,
    )

    async def from_argv() -> CliExporter:
        flags = (f"--channels={ALL_CHANNELS_FLAG}", "--candles.resolutions=1MIN,5MINS",
                 f"--subaccounts={subaccount_of(argv_sim)}")  # fmt: skip
        return await CliExporter.start(argv_sim, *flags)

    async def from_file() -> CliExporter:
        config = tmp_path / "exporter.yml"
        options: dict[str, Any] = {}
        for flag in exporter_argv(file_sim):
            key, _, value = flag.removeprefix("--").partition("=")
            options[key] = value
        options.update({
            "feed.batched": True,
            "candles.resolutions": ["1MIN", "1HOUR"],
            "subaccounts": subaccount_of(file_sim),
        })  # fmt: skip
        config.write_text(yaml.safe_dump(options))
        return await CliExporter.start(file_sim, argv=[f"--config.file={config}"])

    async def from_env() -> CliExporter:
        env = {}
        for flag in exporter_argv(env_sim):
            key, _, value = flag.removeprefix("--").partition("=")
            env["DYDX_EXPORTER_" + key.upper().replace(".", "_").replace("-", "_")] = value
        env["DYDX_EXPORTER_MARKETS"] = ",".join(SUBSET)
        return await CliExporter.start(env_sim, argv=[], env=env)

    # Side by side; a TaskGroup cancels and awaits the others if one fails, so every exporter is stopped.
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(scenario("argv, unbatched", argv_sim, from_argv, all_markets, every)),
            group.create_task(scenario("config file, batched", file_sim, from_file, all_markets, every)),
            group.create_task(
                scenario("environment, unbatched, 3 markets", env_sim, from_env, SUBSET, every[:4])
            ),
        ]
    outcomes = [task.result() for task in tasks]
    for outcome in outcomes:
        assert not outcome.problems, f"{outcome.name}: {report(outcome.problems)}"
        assert not outcome.invalid_logs, f"{outcome.name}: {outcome.invalid_logs[:3]}"
        truth = outcome.truth
        assert set(truth["markets"]) == set(SUBSET if "3 markets" in outcome.name else all_markets)
        assert truth["updates_delivered"][ch.ORDERBOOK] >= BOOK_UPDATES, outcome.name
        assert all(m["book"]["delivered"] for m in truth["markets"].values()), outcome.name
    assert outcomes[0].truth["subaccounts"] and outcomes[1].truth["subaccounts"]
    assert outcomes[2].truth["updates_delivered"][ch.CANDLES] == 0
