"""Oracle sanity (issue 15 point 2), through the installed `dydx-exporter` against the simulator: on a clean
feed every market's oracle sits within 1% of its book mid and its effectiveAt keeps moving; `oracle_skew`
moves one market's dydx_oracle_mid_deviation_ratio to the skew, and `oracle_freeze` stops one market's
dydx_oracle_price_timestamp_seconds while its trades go on and the others' oracles keep moving. About 15 s."""

from __future__ import annotations

import pytest

from tests.fixtures.simulator import SimulatorFactory, control
from tests.groundtruth.support import CliExporter
from tests.helpers import Samples, metric_sum, metric_value, scrape, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

MARKETS = ("BTC-USD", "ETH-USD", "SOL-USD")
SKEWED, FROZEN = "SOL-USD", "ETH-USD"
DEVIATION = "dydx_oracle_mid_deviation_ratio"
STAMP = "dydx_oracle_price_timestamp_seconds"


def stamps(samples: Samples) -> dict[str, float]:
    return {t: metric_value(samples, STAMP, market=t) or 0.0 for t in MARKETS}


async def test_skew_and_freeze_show_on_their_market_only(simulator_factory: SimulatorFactory) -> None:
    sim = await simulator_factory(markets=len(MARKETS))
    exporter = await CliExporter.start(sim)
    url = exporter.metrics_url
    try:

        async def all_quoted() -> Samples:
            s = await scrape(url)
            return s if all(metric_value(s, DEVIATION, market=t) is not None for t in MARKETS) else {}

        clean = await wait_for(all_quoted, timeout=20, interval=0.2, message="a deviation for every market")
        assert all((metric_value(clean, DEVIATION, market=t) or 1) < 0.01 for t in MARKETS)

        await control(sim, "POST", "/control/faults", {"kind": "oracle_skew", "market": SKEWED, "ratio": 0.1})
        await control(sim, "POST", "/control/faults", {"kind": "oracle_freeze", "market": FROZEN})
        frozen_at = stamps(await scrape(url))[FROZEN]

        async def skewed() -> Samples:
            s = await scrape(url)
            return s if 0.09 < (metric_value(s, DEVIATION, market=SKEWED) or 0) < 0.11 else {}

        before = await wait_for(skewed, timeout=10, interval=0.2, message=f"{SKEWED} oracle 10% off its mid")
        trades = metric_sum(before, "dydx_trades_total", market=FROZEN)

        async def moved_on() -> Samples:
            s = await scrape(url)
            others = all(stamps(s)[t] > stamps(before)[t] for t in MARKETS if t != FROZEN)
            traded = metric_sum(s, "dydx_trades_total", market=FROZEN) > trades
            return s if others and traded else {}

        after = await wait_for(moved_on, timeout=20, interval=0.3, message="others' oracles and trades move")
        # The oracle frame in flight when the freeze began may still land: at most that one more stamp.
        assert stamps(after)[FROZEN] == stamps(before)[FROZEN] >= frozen_at
        assert (metric_value(after, DEVIATION, market="BTC-USD") or 1) < 0.01

        await control(sim, "DELETE", "/control/faults")
        await wait_for(
            lambda: _stamp_moves(url, stamps(after)[FROZEN]), timeout=10, message="the oracle moves again"
        )
        assert not exporter.invalid_logs()
    finally:
        await exporter.stop()


async def _stamp_moves(url: str, frozen: float) -> bool:
    return stamps(await scrape(url))[FROZEN] > frozen
