"""Fire drill for "who is at fault" (issue 14): each fault of the chain, the indexer, REST or one link, driven
through the simulator → the exporter (started from its flags) → the real Prometheus rules → the real
Alertmanager, must raise its own alert and none of the other chain-attribution alerts.

Like tests/alerts/test_alerts_e2e.py: one Prometheus (1 s scrape and evaluation) with the real rule files,
every duration scaled by 1/30, one Alertmanager with the real routes and inhibitions and its timers cut to
a second. Each scenario has its own simulator (with its own CometBFT RPC) and exporter, all running side by
side; the scenario is its exporter's `replica` label. Block thresholds are not durations and are not scaled,
so the simulators make a block every 0.2 s. The test prints the confusion matrix (faults by alerts fired)
and requires it to be diagonal; with no --chain.rpc-url nothing new fires and no chain series exist.
Wall time about a minute (the critical tier of DydxIndexerBehindChain needs 100 blocks for a scaled 20 s).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from exporter.config import Settings
from exporter.simulator.server import Simulator
from tests.fixtures.exporter import ExporterFactory
from tests.fixtures.simulator import SimulatorFactory, control
from tests.fixtures.stack import FACTOR, AlertStack, AlertStackFactory, Pair
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

BLOCK_TIME = 0.2
MARKETS = ("BTC-USD", "ETH-USD", "SOL-USD", "LINK-USD")
FIRE_TIMEOUT = 75.0
#: Seconds the path adds to an alert's own time: scrape (1 s), recording and alerting evaluations (1 s
#: each), Alertmanager's grouping (about 1 s), and a loaded 2-core host.
PIPELINE_SLACK = 8.0
RESOLVE_TIMEOUT = 45.0
#: The alerts this drill tells apart (the matrix's columns).
NEW_ALERTS = (
    "DydxChainHalted",
    "DydxIndexerBehindChain",
    "DydxRestBehindWebSocket",
    "DydxLinkBehind",
    "DydxChainRpcDown",
)


@dataclass
class Scenario:
    name: str
    faults: list[dict[str, Any]]
    #: (alertname, severity, within) that must fire, in order: `within` is the documented time, scaled
    #: (the lag needed to reach a block threshold at 0.2 s blocks, plus the rule's window and `for:`).
    alerts: list[tuple[str, str, float]]
    #: Extra exporter flags.
    flags: list[str] = field(default_factory=list)
    chain_rpc: bool = True


SCENARIOS = [
    # No block for a minute: a 30 s window (scaled to the 4 s floor) held 30 s (1 s).
    Scenario("chain-halt", [{"kind": "chain_halt"}], [("DydxChainHalted", "critical", 4 + 1)]),
    # The indexer stops for 25 s, then publishes 25 s (125 blocks) late: the warning tier at 30 blocks,
    # the critical one at 100. Its links stay up (silence timeout above the lag).
    Scenario(
        "indexer-lag",
        [{"kind": "indexer_lag", "seconds": 25}],
        [
            ("DydxIndexerBehindChain", "warning", 30 * BLOCK_TIME + 120 * FACTOR),
            ("DydxIndexerBehindChain", "critical", 100 * BLOCK_TIME + 600 * FACTOR),
        ],
        flags=["--feed.silence-timeout=40s"],
    ),
    Scenario(
        "rest-lag",
        [{"kind": "rest_lag", "blocks": 80}],
        [("DydxRestBehindWebSocket", "warning", 300 * FACTOR)],
    ),
    # Two links (two markets per channel per link); the first connection's frames arrive 5 s (25 blocks)
    # late while the other stays fresh.
    Scenario(
        "link-lag",
        [{"kind": "link_lag", "connection": "0", "seconds": 5}],
        [("DydxLinkBehind", "warning", 10 * BLOCK_TIME + 120 * FACTOR)],
        flags=["--feed.max-subscriptions=2", "--feed.silence-timeout=20s"],
    ),
    Scenario("rpc-down", [{"kind": "rpc_down"}], [("DydxChainRpcDown", "warning", 120 * FACTOR)]),
    Scenario(
        "rpc-catching-up", [{"kind": "rpc_catching_up"}], [("DydxChainRpcDown", "warning", 120 * FACTOR)]
    ),
    Scenario("healthy", [], []),
    Scenario("no-chain-rpc", [], [], chain_rpc=False),
]


def exporter_argv(sim: Simulator, scenario: Scenario) -> list[str]:
    """The exporter's flags, as a user passes them (short timings of a test against a local simulator)."""
    argv = [
        "--web.listen-address=127.0.0.1:0",
        f"--dydx.ws-url={sim.ws_url}",
        f"--dydx.rest-url={sim.base_url}",
        f"--markets={','.join(MARKETS)}",
        "--feed.backoff-initial=50ms",
        "--feed.backoff-max=500ms",
        "--feed.ping-timeout=10s",
        "--feed.silence-timeout=3s",
        "--chain.poll-interval=250ms",
        "--rest.height-interval=500ms",
        "--log.format=json",
        *scenario.flags,
    ]
    if scenario.chain_rpc:
        argv.append(f"--chain.rpc-url={sim.chain_rpc_url}")
    return argv


async def fired_new_alerts(stack: AlertStack, replica: str) -> set[str]:
    return await stack.alerts_of(replica, "firing") & set(NEW_ALERTS)


async def run_scenario(pair: Pair[Scenario], stack: AlertStack, timings: dict[str, dict[str, float]]) -> None:
    scenario = pair.scenario
    labels = {"instance": pair.target, "replica": scenario.name}
    started = time.monotonic()
    for fault in scenario.faults:
        await control(pair.sim, "POST", "/control/faults", fault)
    for alertname, severity, _ in scenario.alerts:
        fired_at = await stack.wait_fired(alertname, FIRE_TIMEOUT, severity=severity, **labels)
        timings[scenario.name][f"{alertname}/{severity} fired"] = round(fired_at - started, 1)
    if not scenario.alerts:
        return
    await control(pair.sim, "DELETE", "/control/faults")
    cleared = time.monotonic()
    for alertname, _, _ in scenario.alerts:
        await stack.am.wait_resolved(alertname, timeout=RESOLVE_TIMEOUT, **labels)
    timings[scenario.name]["resolved"] = round(time.monotonic() - cleared, 1)


def confusion_matrix(fired: dict[str, set[str]]) -> str:
    width = max(len(s.name) for s in SCENARIOS)
    lines = [" " * width + " | " + " | ".join(a.removeprefix("Dydx") for a in NEW_ALERTS)]
    for scenario in SCENARIOS:
        marks = ["X" if a in fired[scenario.name] else "." for a in NEW_ALERTS]
        cells = [mark.center(len(a.removeprefix("Dydx"))) for mark, a in zip(marks, NEW_ALERTS, strict=True)]
        lines.append(scenario.name.ljust(width) + " | " + " | ".join(cells))
    return "\n".join(lines)


async def test_each_fault_fires_its_own_attribution_alert_and_no_other(
    simulator_factory: SimulatorFactory,
    exporter_factory: ExporterFactory,
    alert_stack_factory: AlertStackFactory,
) -> None:
    async def start(scenario: Scenario) -> Pair[Scenario]:
        sim = await simulator_factory(
            markets=list(MARKETS), block_time=BLOCK_TIME, rate=0.2, ping_interval=1.0, chain_rpc_port=0
        )
        settings = Settings.from_sources(exporter_argv(sim, scenario), {})
        return Pair(scenario, sim, await exporter_factory(settings))

    stack, pairs = await alert_stack_factory(SCENARIOS, start)
    prom = stack.prom

    # Baseline: every head is in Prometheus (the chain's only where an RPC is configured), and the link-lag
    # exporter has its two links, each with its own head.
    with_rpc = sum(1 for p in pairs if p.scenario.chain_rpc)

    async def heads_known() -> bool:
        chain = await prom.query("instance:dydx_block_height:behind_chain")
        rest = await prom.query("instance:dydx_rest_block_height:behind_ws")
        behind = 'instance_connection:dydx_link_block_height:behind_freshest{replica="link-lag"}'
        links = await prom.query(behind)
        return len(chain) == with_rpc and len(rest) == len(pairs) and len(links) == 2

    await wait_for(heads_known, 30, interval=0.5, message="every head of every exporter in Prometheus")
    assert await prom.query('{__name__=~"dydx_chain_.+", replica="no-chain-rpc"}') == []
    for pair in pairs:
        assert await fired_new_alerts(stack, pair.scenario.name) == set(), pair.scenario.name

    timings: dict[str, dict[str, float]] = {p.scenario.name: {} for p in pairs}
    async with asyncio.TaskGroup() as group:
        for pair in pairs:
            group.create_task(run_scenario(pair, stack, timings))
    print("timings (s after the fault / after clearing):", timings)

    fired: dict[str, set[str]] = {s.name: set() for s in SCENARIOS}
    for name, replica in stack.notified():
        if name in NEW_ALERTS and replica in fired:
            fired[replica].add(name)
    for pair in pairs:  # the silent ones: not even firing in Prometheus
        fired[pair.scenario.name] |= await fired_new_alerts(stack, pair.scenario.name)
    print("confusion matrix (faults by alerts fired):\n" + confusion_matrix(fired))
    assert fired == {s.name: {a for a, _, _ in s.alerts} for s in SCENARIOS}
    # No alert before its (scaled) `for:` had run, and each within its documented time (scaled) plus what
    # the pipeline adds: a scrape, the recording and the alerting evaluations, Alertmanager, a busy host.
    for scenario in SCENARIOS:
        for alertname, severity, within in scenario.alerts:
            took = timings[scenario.name][f"{alertname}/{severity} fired"]
            assert stack.scaled_for(alertname, severity) <= took <= within + PIPELINE_SLACK, (
                scenario.name,
                alertname,
                took,
                within,
            )
