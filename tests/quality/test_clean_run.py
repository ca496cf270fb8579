"""Zero false positives (issue 15 point 8): a clean feed at full rate (SimulatorConfig.rate 1.0) with blocks
every 0.1 s, so one minute of wall time is ten minutes of simulated chain time (600 blocks), through the
installed `dydx-exporter` with audits every 10 s. Every audit finds 0 mismatched levels; no market's
oracle is ever more than 1% off its book mid (DydxOracleDeviation's threshold is 5%) or without a new
effectiveAt for 30 s of wall time (300 blocks: DydxOracleStale's 5 minutes); no field is unknown (every
snapshot and sampled update), no candle skips a period, nothing is invalid. About 65 s.
"""

from __future__ import annotations

import time

import pytest

from tests.fixtures.simulator import SimulatorFactory
from tests.groundtruth.support import CliExporter
from tests.helpers import metric_sum, scrape, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

MARKETS = 8
WALL_SECONDS = 60.0
BLOCK_TIME = 0.1
#: DydxOracleStale's 5 minutes, in this run's blocks (300 blocks of 0.1 s).
STALE_AFTER = 300 * BLOCK_TIME


async def test_clean_full_rate_run_finds_nothing(simulator_factory: SimulatorFactory) -> None:
    sim = await simulator_factory(markets=MARKETS, block_time=BLOCK_TIME, rate=1.0)
    exporter = await CliExporter.start(sim, "--orderbook.audit-interval=10s", "--candles.resolutions=1MIN")
    url = exporter.metrics_url
    try:
        await wait_for(
            lambda: _deviations(url), timeout=20, interval=0.2, message="every market's oracle and book"
        )
        last_change: dict[str, tuple[float, float]] = {}
        worst_deviation = 0.0
        worst_silence = 0.0
        started = time.monotonic()
        while (now := time.monotonic()) - started < WALL_SECONDS:
            samples = await scrape(url)
            assert metric_sum(samples, "dydx_orderbook_audit_mismatched_levels_total") == 0, [
                e for e in exporter.process.events if e.get("event") == "orderbook_audit_mismatch"
            ]
            for (name, labels), value in samples.items():
                market = dict(labels).get("market", "")
                if name == "dydx_oracle_mid_deviation_ratio":
                    worst_deviation = max(worst_deviation, value)
                elif name == "dydx_oracle_price_timestamp_seconds":
                    stamp, since = last_change.get(market, (value, now))
                    if value != stamp:
                        since = now
                    last_change[market] = (value, since)
                    worst_silence = max(worst_silence, now - since)
            await wait_for(lambda: time.monotonic() - now >= 2.0, timeout=3, interval=0.1)
        samples = await scrape(url)
        audits = metric_sum(samples, "dydx_orderbook_audits_total")
        assert audits >= MARKETS * 3, f"only {audits} audits in {WALL_SECONDS:g} s"
        assert metric_sum(samples, "dydx_orderbook_audit_mismatched_levels_total") == 0
        assert worst_deviation < 0.01, worst_deviation
        assert len(last_change) == MARKETS and worst_silence < STALE_AFTER, (worst_silence, last_change)
        assert metric_sum(samples, "dydx_messages_invalid_total") == 0
        assert metric_sum(samples, "dydx_schema_unknown_fields_total") == 0
        assert metric_sum(samples, "dydx_candle_gaps_total") == 0
        print(f"audits {audits:g}, worst oracle deviation {worst_deviation:.4f}, longest oracle silence "
              f"{worst_silence:.1f} s")  # fmt: skip
    finally:
        await exporter.stop()


async def _deviations(url: str) -> bool:
    samples = await scrape(url)
    return sum(1 for name, _ in samples if name == "dydx_oracle_mid_deviation_ratio") == MARKETS
