"""Candle continuity (issue 15 point 3), through the installed `dydx-exporter` against the simulator: a
subscribed candle whose startedAt moves one period at a time counts no gap; `candle_gap` (the open 1MIN
candle of one market jumps 3 periods ahead) counts exactly 3 on that market and resolution only. A few s."""

from __future__ import annotations

import pytest

from tests.fixtures.simulator import SimulatorFactory, control
from tests.groundtruth.support import CliExporter
from tests.helpers import Samples, metric_sum, metric_value, scrape, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

MARKETS = ("BTC-USD", "ETH-USD", "SOL-USD")
GAPS = "dydx_candle_gaps_total"


async def test_a_candle_gap_is_counted_on_its_market_and_resolution(
    simulator_factory: SimulatorFactory,
) -> None:
    sim = await simulator_factory(markets=len(MARKETS))
    exporter = await CliExporter.start(sim, "--candles.resolutions=1MIN,5MINS")
    url = exporter.metrics_url
    try:

        async def subscribed() -> Samples:
            s = await scrape(url)
            series = [k for k in s if k[0] == GAPS]
            return s if len(series) == 2 * len(MARKETS) else {}

        samples = await wait_for(subscribed, timeout=20, interval=0.2, message="gap series of every candle")
        assert metric_sum(samples, GAPS) == 0
        await control(
            sim, "POST", "/control/faults", {"kind": "candle_gap", "market": "ETH-USD", "resolution": "1MIN",
                                             "periods": 3},
        )  # fmt: skip

        async def counted() -> Samples:
            s = await scrape(url)
            return s if metric_sum(s, GAPS) > 0 else {}

        samples = await wait_for(counted, timeout=10, interval=0.2, message="the gap counted")
        assert metric_value(samples, GAPS, market="ETH-USD", resolution="1MIN") == 3
        assert metric_sum(samples, GAPS) == 3
        assert not exporter.invalid_logs()
    finally:
        await exporter.stop()
