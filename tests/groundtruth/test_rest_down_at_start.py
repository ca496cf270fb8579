"""REST down when the exporter starts: the v4_markets snapshot alone lists the markets, and what it carries
(each market's oracle price) is exported as the simulator sent it, before any oracle update.

The exporter is the installed `dydx-exporter` started with argv; the simulator is paused before it starts,
so the snapshot is the only source of the prices and the truth is exact. (A market first listed by the
snapshot once lost its price until the next oracle update: its series was made after the prices were taken.)
"""

from __future__ import annotations

import pytest

from exporter.protocol import channels as ch
from tests.fixtures.simulator import SimulatorFactory, control
from tests.groundtruth.support import CliExporter, ground_truth, pause, report
from tests.helpers import Samples, metric_sum, metric_value, scrape, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


async def test_markets_listed_only_by_the_channel_snapshot_export_its_oracle_prices(
    simulator_factory: SimulatorFactory,
) -> None:
    sim = await simulator_factory(markets=4, block_time=0.2, rate=1.0, seed=7)
    tickers = tuple(sim.source.tickers())
    await pause(sim)
    # REST answers 503 to every request (discovery, heads); WebSocket snapshots are still served.
    await control(sim, "POST", "/control/faults", {"kind": "rest_error", "status": 503, "snapshots": False})
    exporter = await CliExporter.start(sim, f"--channels={ch.MARKETS},{ch.BLOCK_HEIGHT}")
    try:
        samples: Samples = {}

        async def listed() -> bool:
            nonlocal samples
            samples = await scrape(exporter.metrics_url)
            return all(metric_value(samples, "dydx_market_info", market=t, status="ACTIVE") for t in tickers)

        await wait_for(listed, timeout=20, interval=0.2, message="every market listed by v4_markets")
        truth = await ground_truth(sim)
        rest_ok = metric_sum(samples, "dydx_rest_requests_total", code="200")
        assert metric_sum(samples, "dydx_rest_requests_total", code="503") and not rest_ok, "REST answered"
        problems = [
            f"{t} oracle: exported {metric_value(samples, 'dydx_oracle_price', market=t)}, "
            f"sent {truth['markets'][t]['oracle_price']}"
            for t in tickers
            if metric_value(samples, "dydx_oracle_price", market=t)
            != float(truth["markets"][t]["oracle_price"])
        ]
        assert not problems, report(problems)
        assert not exporter.invalid_logs()
    finally:
        assert await exporter.stop() == 0
