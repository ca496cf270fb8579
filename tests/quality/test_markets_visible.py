"""Markets stay visible (issue 15 point 5): a market the indexer still lists keeps dydx_market_info with its
current status after the exporter unsubscribes its book and trades (FINAL_SETTLEMENT), and loses it only
when the indexer stops listing it. Through the installed `dydx-exporter` against the simulator."""

from __future__ import annotations

import pytest

from tests.fixtures.simulator import SimulatorFactory, control
from tests.groundtruth.support import CliExporter
from tests.helpers import Samples, metric_sum, scrape, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

MARKET = "ETH-USD"


def info(samples: Samples, ticker: str) -> dict[str, float]:
    """status → value of the market's dydx_market_info series."""
    return {
        dict(labels)["status"]: value
        for (name, labels), value in samples.items()
        if name == "dydx_market_info" and dict(labels).get("market") == ticker
    }


def book_series(samples: Samples, ticker: str) -> int:
    return sum(
        1
        for (name, labels), _ in samples.items()
        if name.startswith(("dydx_orderbook_", "dydx_trades_")) and dict(labels).get("market") == ticker
    )


async def test_final_settlement_keeps_market_info_until_delisted(
    simulator_factory: SimulatorFactory,
) -> None:
    sim = await simulator_factory(markets=4)
    exporter = await CliExporter.start(sim, "--discovery.interval=1s")
    try:
        url = exporter.metrics_url

        async def subscribed() -> Samples:
            s = await scrape(url)
            return s if info(s, MARKET) == {"ACTIVE": 1} and book_series(s, MARKET) else {}

        await wait_for(subscribed, timeout=20, interval=0.2, message=f"{MARKET} listed and its book held")

        await control(sim, "POST", "/control/markets", {"market": MARKET, "status": "FINAL_SETTLEMENT"})

        async def settled() -> Samples:
            s = await scrape(url)
            return s if info(s, MARKET) == {"FINAL_SETTLEMENT": 1} and not book_series(s, MARKET) else {}

        samples = await wait_for(
            settled, timeout=20, interval=0.2, message=f"{MARKET} FINAL_SETTLEMENT, book and trades gone"
        )
        # Still there after two more REST refreshes of the list: the indexer lists it, so it stays.
        refreshes = rest_lists(samples)
        samples = await wait_for(
            lambda: _after(url, refreshes + 2), timeout=10, interval=0.2, message="two REST refreshes"
        )
        assert info(samples, MARKET) == {"FINAL_SETTLEMENT": 1}
        assert info(samples, "BTC-USD") == {"ACTIVE": 1}

        await control(sim, "POST", "/control/markets", {"delist": MARKET})
        await wait_for(
            lambda: _gone(url), timeout=20, interval=0.2, message=f"{MARKET} gone once no longer listed"
        )
        assert not exporter.invalid_logs()
    finally:
        await exporter.stop()


def rest_lists(samples: Samples) -> float:
    return metric_sum(samples, "dydx_rest_requests_total", endpoint="/v4/perpetualMarkets")


async def _after(url: str, refreshes: float) -> Samples:
    samples = await scrape(url)
    return samples if rest_lists(samples) >= refreshes else {}


async def _gone(url: str) -> bool:
    samples = await scrape(url)
    return not any(dict(labels).get("market") == MARKET for (_, labels) in samples)
