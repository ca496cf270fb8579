"""Scaling out, end to end on real engines: nothing lost, nothing counted twice.

One simulator; four exporters started through the real CLI (`--shard 0/2` and `--shard 1/2`, each an HA pair
of replicas a and b); two scrapers, vmagent and Prometheus in agent mode, each scraping all four and
remote-writing to one VictoriaMetrics that de-duplicates their copies; vmalert evaluating the project's own
prometheus/rules/ against VictoriaMetrics, writing the recorded series back and notifying the real
Alertmanager. Every engine runs from the shipped files of deploy/victoriametrics/ (tests/scaling/stack.py
says what is templated: addresses, paths and time constants, 15 s scaled to 1 s).

Asserted, with the simulator paused before each comparison:
- every query of every dashboard panel returns data from VictoriaMetrics;
- the recorded feed-wide totals (`channel:dydx_updates_total:sum` per channel, `market:dydx_trades_total:sum`
  per market) equal what the simulator published, exactly: HA pairs counted once, shards summed, every
  market in exactly one shard; every exporter's block height is the simulator's; the only invalid frames
  are the injected malformed ones; both scrapers wrote, yet each series has one sample per scrape interval;
- a simulator fault (a message-id gap) fires DydxMessageGaps through vmalert to Alertmanager's webhook;
- stopping one replica of a pair (then restarting it), then one scraper, loses nothing: the totals are
  exact while the scraper is down and again after it is back.

Wall time: 40-70 s measured on the shared, loaded 2-core development machine (load average 4-5).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, cast

import pytest

from exporter.config import shard_of
from exporter.protocol import channels as ch
from exporter.simulator.server import Simulator
from grafana.promapi import PrometheusAPI
from grafana.render import Window
from tests.fixtures.exporter import start_exporter_process
from tests.fixtures.prom import AlertmanagerFactory
from tests.fixtures.simulator import SimulatorFactory, control
from tests.fixtures.webhook import WebhookReceiver
from tests.grafana.test_dashboards_e2e import dashboards, wait_every_panel_has_data
from tests.helpers import ConditionTimeout, LoggedProcess, free_ports, metric_sum, scrape, wait_for
from tests.scaling.stack import (
    EXAMPLE_ALERTMANAGER,
    EXAMPLE_EXPORTERS,
    EXAMPLE_VICTORIAMETRICS,
    Component,
    Timing,
    prometheus_agent,
    started,
    victoria_metrics,
    vmagent,
    vmalert,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

TIMING = Timing()
#: The channels every exporter subscribes here (the defaults plus the simulator's synthetic subaccount).
CHANNELS = (ch.ORDERBOOK, ch.TRADES, ch.MARKETS, ch.BLOCK_HEIGHT, ch.SUBACCOUNTS)
MARKETS = 8  # one WebSocket link per exporter (32 subscriptions per channel per link)
#: Garbage frames the malformed fault sends on every link (for the invalid-frame panels).
MALFORMED = 2.0
#: Blocks (0.5 s each) the market runs with a replica down, then with a scraper down: several scrapes.
PHASE_BLOCKS = 6
#: Data reaches a recorded series after a scrape, a remote-write batch (Prometheus sends every 5 s), the
#: latency offset, an evaluation and vmalert's flush: well under this.
CONVERGE = 40.0
#: Evaluations (1 s apart) the recorded totals must stay equal to the ground truth for, once equal: more
#: than the latency offset and vmalert's flush interval, so newer results are visible to the query.
STABLE_EVALUATIONS = 5


class Replica:
    """One exporter process (`python -m exporter`, real argv) on a fixed port: a restart keeps its target."""

    def __init__(self, sim: Simulator, shard: str, name: str, port: int, subaccount: str) -> None:
        self.sim, self.shard, self.name, self.port = sim, shard, name, port
        index, count = (int(n) for n in shard.split("/"))
        #: The markets of this shard, as the exporter computes it.
        self.markets = sum(1 for t in sim.source.tickers() if shard_of(t, count) == index)
        self.flags = (
            f"--web.listen-address=127.0.0.1:{port}",
            f"--shard={shard}",
            f"--subaccounts={subaccount}",
            # A gap is counted one second after it (default 10 s): the alert arrives sooner.
            "--data.message-id-grace=1s",
            # REST discovery every second (default 5 m), so the REST latency panels have recent requests.
            "--discovery.interval=1s",
            # The chain's head, from the simulator's CometBFT RPC, for the "Who is at fault" panels.
            f"--chain.rpc-url={sim.chain_rpc_url}",
            "--chain.poll-interval=500ms",
            # Book audits every 2 s (default 10 m) and 1MIN candles, for the drilldown's data-quality row;
            # four exporters' audits, discovery and height polls stay under the simulator's REST limit.
            "--orderbook.audit-interval=2s",
            "--candles.resolutions=1MIN",
        )
        self.process: LoggedProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.process = await start_exporter_process(self.sim, *self.flags)
        await self.process.wait_event("exporter_started")

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            assert await process.stop() == 0, process.events[-5:]

    async def wait_subscribed(self) -> None:
        async def subscribed() -> bool:
            samples = await scrape(f"http://{self.address}/metrics")

            def active(channel: str) -> float:
                return metric_sum(samples, "dydx_subscriptions", channel=channel, state="active")

            return active(ch.ORDERBOOK) == self.markets and active(ch.SUBACCOUNTS) == 1

        await wait_for(subscribed, timeout=30, message=f"exporter {self.shard} {self.name} subscribed")


async def ground_truth(sim: Simulator) -> tuple[dict[str, float], dict[str, float]]:
    """What the simulator published: updates per channel, live trades per market (every listed market)."""
    samples = await scrape(sim.base_url + "/metrics")
    updates = {c: metric_sum(samples, "dydx_simulator_updates_published_total", channel=c) for c in CHANNELS}
    published = "dydx_simulator_trades_published_total"
    trades = {t: metric_sum(samples, published, market=t) for t in sim.source.tickers()}
    return updates, trades


async def by_label(vm: Component, expr: str, label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in await vm.query(expr)}


async def recording_evaluations(ruler: Component) -> float:
    samples = await scrape(ruler.url + "/metrics")
    return metric_sum(samples, "vmalert_iteration_total", group="dydx-exporter.recording")


async def assert_recorded_totals_exact(vm: Component, ruler: Component, sim: Simulator, when: str) -> None:
    """Paused: the recorded totals in VictoriaMetrics reach the simulator's ground truth exactly, and stay
    there for STABLE_EVALUATIONS more evaluations (a total rising past the truth cannot pass); every
    exporter's block height is the simulator's."""
    assert sim.paused
    truth_updates, truth_trades = await ground_truth(sim)
    assert sum(truth_trades.values()) > 0 and all(truth_updates.values()), truth_updates
    height = float((await control(sim, "GET", "/control/truth"))["block_height"])
    last: dict[str, Any] = {}

    async def exact() -> bool:
        updates = await by_label(vm, "channel:dydx_updates_total:sum", "channel")
        trades = await by_label(vm, "market:dydx_trades_total:sum", "market")
        heights = await by_label(vm, "dydx_block_height", "instance")
        last.update(updates={c: updates.get(c) for c in CHANNELS}, trades=trades, heights=heights)
        return (
            last["updates"] == truth_updates
            and trades == truth_trades
            and list(heights.values()) == [height] * len(EXAMPLE_EXPORTERS)
        )

    try:
        await wait_for(cast(Any, exact), timeout=CONVERGE, interval=0.5)
    except ConditionTimeout:
        pytest.fail(
            f"{when}: recorded totals never matched the ground truth\n"
            f"  updates recorded {last.get('updates')}\n  updates truth    {truth_updates}\n"
            f"  trades recorded  {last.get('trades')}\n  trades truth     {truth_trades}\n"
            f"  block heights    {last.get('heights')}, truth {height}"
        )
    seen = await recording_evaluations(ruler)

    async def evaluated_again() -> bool:
        return await recording_evaluations(ruler) >= seen + STABLE_EVALUATIONS

    await wait_for(evaluated_again, timeout=CONVERGE, interval=0.5, message="vmalert evaluates again")
    assert await exact(), f"{when}: the recorded totals moved past the ground truth: {last}"


async def run_for_blocks(sim: Simulator, blocks: int) -> None:
    """Resume the market until `blocks` more blocks have been published (a condition, not a duration)."""
    before, _ = await ground_truth(sim)
    await control(sim, "POST", "/control/resume")

    async def published() -> bool:
        now, _ = await ground_truth(sim)
        return now[ch.BLOCK_HEIGHT] >= before[ch.BLOCK_HEIGHT] + blocks

    await wait_for(published, timeout=30, interval=0.2, message=f"{blocks} more blocks published")


async def test_shards_ha_pairs_two_scrapers_victoriametrics_vmalert(
    simulator_factory: SimulatorFactory,
    alertmanager_factory: AlertmanagerFactory,
    webhook_receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    sim = await simulator_factory(markets=MARKETS, block_time=0.5, rate=2, paused=True, chain_rpc_port=0)
    synthetic: Any = sim.source  # the synthetic market serves one subaccount (for the subaccount panels)
    subaccount = next(f"{s.address}/{s.number}" for s in synthetic.subaccounts)
    alertmanager = await alertmanager_factory(webhook_url=webhook_receiver.url)
    ports = free_ports(8)
    replicas = {
        key: Replica(sim, key[0], key[1], port, subaccount)
        for key, port in zip(EXAMPLE_EXPORTERS, ports[4:], strict=True)
    }
    hosts = {
        EXAMPLE_VICTORIAMETRICS: f"127.0.0.1:{ports[0]}",
        EXAMPLE_ALERTMANAGER: alertmanager.url.removeprefix("http://"),
        **{EXAMPLE_EXPORTERS[key]: replica.address for key, replica in replicas.items()},
    }
    vm = victoria_metrics(ports[0], tmp_path / "victoria-metrics", TIMING)
    agent = vmagent(ports[1], tmp_path / "vmagent", TIMING, hosts)
    prom = prometheus_agent(ports[2], tmp_path / "prometheus-agent", TIMING, hosts)
    ruler = vmalert(ports[3], tmp_path / "vmalert", TIMING, hosts)
    started_at = time.time()

    def window() -> Window:
        now = time.time()
        return Window(max(started_at, now - 120), now, TIMING.scrape_interval)

    try:
        await asyncio.gather(*(r.start() for r in replicas.values()))
        async with started(vm, agent, prom, ruler):
            await asyncio.gather(*(r.wait_subscribed() for r in replicas.values()))
            assert {r.markets for r in replicas.values()} != {0}, "both shards have markets"

            # Faults that give the error panels something to show, and the gap whose alert must arrive
            # through vmalert. None of them loses or invents an update.
            await run_for_blocks(sim, 4)
            market = sim.source.tickers()[0]
            for fault in (
                {"kind": "error"},
                {"kind": "malformed", "count": int(MALFORMED)},
                {"kind": "gap", "count": 2},
                {"kind": "cross", "market": market, "seconds": 3},
            ):
                await control(sim, "POST", "/control/faults", fault)
            # A status change of another market, for the overview's market status panels.
            other = next(t for t in sim.source.tickers() if t != market)
            await control(sim, "POST", "/control/markets", {"market": other, "status": "PAUSED"})
            notified = await webhook_receiver.wait_for_alert("DydxMessageGaps", timeout=CONVERGE)
            assert {a["labels"]["shard"] for a in notified} <= {"0/2", "1/2"}
            assert any("vmalert" in a.get("generatorURL", "") for a in notified), notified[0]
            await alertmanager.wait_for_alert("DydxMessageGaps", cluster="dydx")

            await wait_every_panel_has_data(PrometheusAPI(vm.url), dashboards(), window, timeout=60)
            await control(sim, "POST", "/control/pause")
            await assert_recorded_totals_exact(vm, ruler, sim, "all up")
            await assert_deduplicated(vm, agent, prom, sim)
            # A clean run apart from the faults: the only invalid frames are the injected malformed ones
            # (MALFORMED on each exporter's one link).
            invalid = await by_label(vm, "sum by (instance) (dydx_messages_invalid_total)", "instance")
            assert invalid == {r.address: MALFORMED for r in replicas.values()}, invalid

            # One replica of a pair down, then back (its counters start from zero again): its twin's count
            # is the pair's.
            await control(sim, "POST", "/control/resume")
            lost = replicas[("0/2", "a")]
            await lost.stop()
            await run_for_blocks(sim, PHASE_BLOCKS)
            await lost.start()
            await lost.wait_subscribed()

            # Then one scraper down: the other carries everything.
            await agent.stop()
            await run_for_blocks(sim, PHASE_BLOCKS)
            await control(sim, "POST", "/control/pause")
            await assert_recorded_totals_exact(vm, ruler, sim, "one replica restarted, vmagent down")
            restarted = await by_label(vm, 'sum by (replica) (dydx_trades_total{shard="0/2"})', "replica")
            assert restarted["a"] < restarted["b"], f"replica a counts again from zero: {restarted}"

            await agent.start()
            await run_for_blocks(sim, PHASE_BLOCKS)
            await control(sim, "POST", "/control/pause")
            await assert_recorded_totals_exact(vm, ruler, sim, "after recovery")
    finally:
        await asyncio.gather(*(r.stop() for r in replicas.values()), return_exceptions=True)


async def assert_deduplicated(vm: Component, agent: Component, prom: Component, sim: Simulator) -> None:
    """The raw data holds both replicas of each pair and both scrapers wrote it, yet it is one series per
    target with one sample per scrape interval, and every market lives in exactly one shard."""
    _, truth_trades = await ground_truth(sim)
    naive = await vm.query_value("sum(dydx_trades_total)")
    assert naive == 2 * sum(truth_trades.values()), "both replicas of each pair are stored"
    shards = await by_label(vm, "count by (market) (group by (market, shard) (dydx_trades_total))", "market")
    assert shards == dict.fromkeys(sim.source.tickers(), 1.0), "every market in exactly one shard"
    assert await vm.query_value("count(dydx_exporter_build_info)") == 4
    # Both scrapers sent samples...
    sent = await scrape(agent.url + "/metrics")
    assert metric_sum(sent, "vmagent_remotewrite_blocks_sent_total") > 0
    sent = await scrape(prom.url + "/metrics")
    assert metric_sum(sent, "prometheus_remote_storage_samples_total") > 0
    # ...and VictoriaMetrics kept one per scrape interval: 10 s of 1 s scrapes is about 10, not 20.
    window = 10 * TIMING.scrape_interval
    per_target = await by_label(vm, f"count_over_time(up[{window:g}s])", "instance")
    assert per_target and all(n <= window + 1 for n in per_target.values()), per_target
