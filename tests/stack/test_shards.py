"""Scale-out: two exporters with --shard 0/2 and 1/2 against one indexer cover every market exactly once."""

from __future__ import annotations

import aiohttp
import pytest

from exporter.feed.discovery import DELISTED_STATUSES
from tests.helpers import Samples, metric_sum, scrape, wait_for

MARKETS = 12


def exported_markets(samples: Samples) -> set[str]:
    """Markets whose order book this exporter publishes."""
    return {
        dict(labels)["market"] for (name, labels), _ in samples.items() if name == "dydx_orderbook_levels"
    }


@pytest.mark.timeout(60)
async def test_two_shards_cover_every_market_exactly_once(simulator_factory, exporter_factory):
    sim = await simulator_factory(markets=MARKETS, block_time=0.1)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{sim.base_url}/v4/perpetualMarkets") as resp,
    ):
        markets = (await resp.json())["markets"]
    expected = {ticker for ticker, market in markets.items() if market["status"] not in DELISTED_STATUSES}
    assert len(expected) >= MARKETS - 2

    shards = [await exporter_factory(sim, shard_index=i, shard_count=2) for i in range(2)]
    urls = [exp.url + exp.settings.telemetry_path for exp in shards]

    async def fully_subscribed():
        samples = [await scrape(url) for url in urls]
        active = sum(
            metric_sum(s, "dydx_subscriptions", channel="v4_orderbook", state="active") for s in samples
        )
        covered = sum(len(exported_markets(s)) for s in samples)
        return samples if active == len(expected) and covered == len(expected) else None

    samples: list[Samples] = await wait_for(
        fully_subscribed, timeout=30, interval=0.2, message="both shards subscribed"
    )
    first, second = (exported_markets(s) for s in samples)
    assert first and second, "both shards carry markets"
    assert not first & second, f"exported by both shards: {first & second}"
    assert first | second == expected
    # Both replicas still watch the feed-wide channels.
    for s in samples:
        assert metric_sum(s, "dydx_subscriptions", channel="v4_block_height", state="active") == 1
