"""Book audits (issue 15 point 1), through the installed `dydx-exporter` against the simulator: with audits
every few seconds a clean feed finds not one mismatched level, and a ghost level (a level the stream
carries and the indexer's book does not, fault ghost_level) is found as `extra` on its market only, by
every audit while it is in force (the market held still meanwhile). About 50 s: each audit spans twice
the 5 s race window."""

from __future__ import annotations

import pytest

from tests.fixtures.simulator import SimulatorFactory, control
from tests.groundtruth.support import CliExporter, ground_truth, pause
from tests.helpers import Samples, metric_sum, metric_value, scrape, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

MARKETS = ("BTC-USD", "ETH-USD", "SOL-USD")
GHOST = "ETH-USD"
AUDITS = "dydx_orderbook_audits_total"
MISMATCHED = "dydx_orderbook_audit_mismatched_levels_total"


def audited(samples: Samples, times: int) -> bool:
    return all((metric_value(samples, AUDITS, market=t) or 0) >= times for t in MARKETS)


async def test_clean_feed_audits_find_nothing_and_a_ghost_level_is_extra(
    simulator_factory: SimulatorFactory,
) -> None:
    sim = await simulator_factory(markets=len(MARKETS))
    # A paused feed is silent: the link watchdog must not cut it meanwhile.
    exporter = await CliExporter.start(sim, "--orderbook.audit-interval=3s", "--feed.silence-timeout=60s")
    url = exporter.metrics_url
    try:

        async def after(times: int, market: tuple[str, ...] = MARKETS) -> Samples:
            samples = await scrape(url)
            done = all((metric_value(samples, AUDITS, market=t) or 0) >= times for t in market)
            return samples if done else {}

        samples = await wait_for(lambda: after(2), timeout=40, interval=0.5, message="two audits per book")
        assert metric_sum(samples, MISMATCHED) == 0, "a clean feed's audits found mismatched levels"
        assert metric_sum(samples, "dydx_orderbook_audit_mismatch_ratio") == 0
        assert metric_sum(samples, "dydx_rest_requests_total", code="200") > 0

        # The ghost phase holds the market still (pause: no market events, connections up), so the book
        # cannot drift across the ghost (the source does not know it) or past the audited depth.
        await pause(sim)
        fault = await control(sim, "POST", "/control/faults", {"kind": "ghost_level", "market": GHOST})
        truth = await ground_truth(sim, (GHOST,))
        assert truth["ghost_levels"] == {GHOST: [{"side": "bid", "price": fault["fault"]["price"]}]}, truth
        base = metric_value(samples, AUDITS, market=GHOST) or 0

        async def ghost_found() -> Samples:
            s = await scrape(url)
            audits = metric_value(s, AUDITS, market=GHOST) or 0
            return s if audits >= base + 2 else {}

        samples = await wait_for(ghost_found, timeout=30, interval=0.5, message="two audits with the ghost")
        extra = metric_value(samples, MISMATCHED, market=GHOST, kind="extra") or 0
        audits = (metric_value(samples, AUDITS, market=GHOST) or 0) - base
        # Every audit since the ghost appeared found it (an audit begun before may have left it out).
        assert audits - 1 <= extra <= audits, (extra, audits)
        assert (metric_value(samples, "dydx_orderbook_audit_mismatch_ratio", market=GHOST) or 0) > 0
        assert metric_sum(samples, MISMATCHED, market=GHOST, kind="missing") == 0
        assert metric_sum(samples, MISMATCHED, market=GHOST, kind="size") == 0
        others = [t for t in MARKETS if t != GHOST]
        assert sum(metric_sum(samples, MISMATCHED, market=t) for t in others) == 0
        assert not exporter.invalid_logs()
    finally:
        await exporter.stop()
