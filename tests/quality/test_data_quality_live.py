"""Data-quality features against the simulator over real sockets: a crossed book is re-snapshotted (and
only when asked), books are refreshed periodically without dropping readiness, every subscribed market
reports how fresh it is, and configured subaccounts are followed end to end."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from exporter.protocol import channels as ch
from tests.fixtures.support import fault, metrics, readyz, truth, wait_ready
from tests.helpers import metric_sum, metric_value, wait_for

pytestmark = pytest.mark.timeout(45)

MARKET = "BTC-USD"
CROSSED_AFTER = 1.0


async def resyncs(exp: Any, reason: str, **labels: str) -> float:
    return metric_sum(await metrics(exp), "dydx_orderbook_resyncs_total", reason=reason, **labels)


async def test_a_book_that_stays_crossed_is_resubscribed_and_only_when_enabled(
    simulator_factory, exporter_factory
):
    sim = await simulator_factory(markets=3, block_time=0.1, rate=0.3)
    resyncing = await exporter_factory(sim, crossed_resync_after=CROSSED_AFTER)
    plain = await exporter_factory(sim, crossed_resync_after=0)
    await wait_ready(resyncing)
    await wait_ready(plain)
    unsubscribes_before = metric_sum(
        await truth(sim), "dydx_simulator_client_messages_total", kind="unsubscribe"
    )

    crossed_at = time.monotonic()
    await fault(sim, "cross", market=MARKET, seconds=20)

    async def resynced_twice() -> Any:
        return await resyncs(resyncing, "crossed", market=MARKET) >= 2

    await wait_for(resynced_twice, timeout=15, message="two crossed resyncs")
    elapsed = time.monotonic() - crossed_at
    samples = await metrics(resyncing)
    # At most once per period per market, and only the crossed market.
    assert metric_sum(samples, "dydx_orderbook_resyncs_total", reason="crossed", market=MARKET) <= (
        elapsed / CROSSED_AFTER + 1
    )
    assert metric_sum(samples, "dydx_orderbook_resyncs_total", reason="crossed") == metric_sum(
        samples, "dydx_orderbook_resyncs_total", reason="crossed", market=MARKET
    )
    assert metric_sum(samples, "dydx_orderbook_resyncs_total", reason="reconnect") == 0
    # It really went back to the server for a fresh snapshot, and came back with a full book.
    assert metric_sum(await truth(sim), "dydx_simulator_client_messages_total", kind="unsubscribe") >= (
        unsubscribes_before + 2
    )
    assert (metric_value(samples, "dydx_orderbook_levels", market=MARKET, side="ask") or 0) > 0
    assert metric_value(samples, "dydx_subscriptions", channel=ch.ORDERBOOK, state="failed") == 0
    assert (await readyz(resyncing))[0] == 200

    # With the resync off, the same ghost level keeps the book crossed and nothing is resubscribed.
    samples = await metrics(plain)
    assert metric_value(samples, "dydx_orderbook_crossed", market=MARKET) == 1
    assert metric_sum(samples, "dydx_orderbook_resyncs_total") == 0


@pytest.mark.slow
async def test_periodic_resync_refreshes_every_book_while_staying_ready(simulator_factory, exporter_factory):
    # Snapshots take 0.3 s to "fetch", so each refresh leaves its subscription pending for that long.
    sim = await simulator_factory(markets=3, block_time=0.1, rate=0.3, snapshot_delay=0.3)
    exp = await exporter_factory(sim, resync_interval=1.0, crossed_resync_after=0)
    await wait_ready(exp)
    statuses: list[int] = []

    async def every_book_refreshed_twice() -> Any:
        statuses.append((await readyz(exp))[0])
        samples = await metrics(exp)
        books = [
            v
            for (n, lbls), v in samples.items()
            if n == "dydx_orderbook_resyncs_total" and ("reason", "periodic") in lbls
        ]
        return len(books) == 3 and min(books) >= 2

    await wait_for(
        every_book_refreshed_twice, timeout=15, interval=0.02, message="two periodic resyncs per book"
    )
    # Refreshing a book is not an outage: /readyz never flapped while ~6 resubscribes went out.
    assert set(statuses) == {200}, statuses
    samples = await metrics(exp)
    assert metric_sum(samples, "dydx_orderbook_resyncs_total", reason="resubscribe") == 0
    assert metric_sum(samples, "dydx_subscription_failures_total") == 0
    assert metric_sum(samples, "dydx_ws_reconnects_total") == 0


async def test_every_subscribed_market_reports_its_data_age(simulator_factory, exporter_factory):
    sim = await simulator_factory(markets=3, block_time=0.1)
    channels = (ch.MARKETS, ch.TRADES, ch.ORDERBOOK, ch.BLOCK_HEIGHT, ch.CANDLES)
    exp = await exporter_factory(sim, channels=channels, candle_resolutions=("1MIN",))
    await wait_ready(exp)
    name = "dydx_market_last_update_timestamp_seconds"
    per_market = {ch.ORDERBOOK, ch.TRADES, ch.CANDLES, ch.MARKETS}

    async def all_stamped() -> Any:
        samples = await metrics(exp)
        stamped = {
            (dict(lbls)["market"], dict(lbls)["channel"]) for (n, lbls), _ in samples.items() if n == name
        }
        return samples if len(stamped) == 3 * len(per_market) else None

    samples = await wait_for(all_stamped, timeout=15, message="a freshness series per market and channel")
    now = time.time()
    for (n, labels), stamp in samples.items():
        if n == name:
            assert dict(labels)["channel"] in per_market
            assert now - 10 < stamp <= now + 0.1, (labels, now - stamp)
    # The busiest market's book is seconds fresh at most.
    assert now - (metric_value(samples, name, market=MARKET, channel=ch.ORDERBOOK) or 0) < 2

    # Stalled: the stamps stop moving, so the data age grows.
    await fault(sim, "stall", channel=ch.ORDERBOOK, seconds=5)
    frozen = metric_value(await metrics(exp), name, market=MARKET, channel=ch.ORDERBOOK)
    await asyncio.sleep(0.5)  # a deliberate interval: the stamp must NOT move during it
    assert metric_value(await metrics(exp), name, market=MARKET, channel=ch.ORDERBOOK) == frozen


async def test_configured_subaccounts_are_followed_end_to_end(simulator_factory, exporter_factory):
    sim = await simulator_factory(markets=2, block_time=0.1, subaccounts=2)
    known = [f"{s.address}/{s.number}" for s in sim.source.subaccounts]
    equities = {f"{s.address}/{s.number}": s.equity for s in sim.source.subaccounts}
    unknown = "dydx1" + "q" * 38 + "/3"
    exp = await exporter_factory(sim, subaccounts=(*known, unknown), subaccount_refresh_interval=0.5)
    await wait_ready(exp)

    async def followed() -> Any:
        samples = await metrics(exp)
        refreshed = metric_sum(await truth(sim), "dydx_simulator_client_messages_total", kind="unsubscribe")
        orders = sum(metric_value(samples, "dydx_subaccount_open_orders", subaccount=s) or 0 for s in known)
        return samples if orders >= 1 and refreshed >= 2 else None

    samples = await wait_for(followed, timeout=20, message="open orders seen and subaccounts refreshed")
    assert metric_value(samples, "dydx_subscriptions", channel=ch.SUBACCOUNTS, state="active") == 3
    for sub in known:
        assert metric_value(samples, "dydx_subaccount_equity", subaccount=sub) == pytest.approx(equities[sub])
        assert metric_value(samples, "dydx_subaccount_free_collateral", subaccount=sub) == pytest.approx(
            equities[sub] * 0.8
        )
        assert metric_value(samples, "dydx_subaccount_open_positions", subaccount=sub) == 0
        for side in ("buy", "sell"):
            assert metric_value(samples, "dydx_subaccount_fills_total", subaccount=sub, side=side) == 0
    # Unknown to the indexer: an empty snapshot, so no equity, and nothing open.
    assert metric_value(samples, "dydx_subaccount_equity", subaccount=unknown) is None
    assert metric_value(samples, "dydx_subaccount_open_orders", subaccount=unknown) == 0
    # Only configured ids ever become label values.
    labels = {
        dict(lbls).get("subaccount") for (n, lbls), _ in samples.items() if n.startswith("dydx_subaccount_")
    }
    assert labels == {*known, unknown}
    assert metric_sum(samples, "dydx_messages_invalid_total", channel=ch.SUBACCOUNTS) == 0
    assert (await readyz(exp))[0] == 200
