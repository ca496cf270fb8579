"""The exporter against the simulator over real sockets: steady state, scale-out, nothing lost, latency."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import bcrypt
import pytest

from exporter.protocol import channels as ch
from tests.fixtures.simulator import control
from tests.fixtures.support import fault, metrics, readyz, truth, wait_ready
from tests.helpers import metric_sum, metric_value, wait_for

pytestmark = pytest.mark.timeout(60)

#: Every contract metric (issue 3) that must exist once the exporter has seen data. Histograms are listed
#: by their _count sample.
CONTRACT = (
    "dydx_ws_messages_total",
    "dydx_ws_received_bytes_total",
    "dydx_updates_total",
    "dydx_trades_total",
    "dydx_trade_volume_total",
    "dydx_trade_notional_total",
    "dydx_feed_latency_seconds_count",
    "dydx_processing_seconds_count",
    "dydx_ws_ping_rtt_seconds_count",
    "dydx_ws_errors_total",
    "dydx_messages_invalid_total",
    "dydx_ws_connection_failures_total",
    "dydx_ws_disconnects_total",
    "dydx_ws_reconnects_total",
    "dydx_message_id_gaps_total",
    "dydx_trades_duplicate_total",
    "dydx_subscription_failures_total",
    "dydx_component_up",
    "dydx_ws_connected",
    "dydx_subscriptions",
    "dydx_last_message_timestamp_seconds",
    "dydx_block_height",
    "dydx_block_timestamp_seconds",
    "dydx_exporter_build_info",
    "dydx_market_info",
    "dydx_orderbook_crossed",
    "dydx_orderbook_crossed_total",
    "dydx_orderbook_best_price",
    "dydx_orderbook_spread_ratio",
    "dydx_orderbook_levels",
    "dydx_orderbook_resyncs_total",
    "dydx_oracle_price",
    "dydx_last_trade_price",
)


def names(samples: Any) -> set[str]:
    return {name for name, _ in samples}


async def test_steady_state_every_contract_metric_present_and_moving(simulator_factory, exporter_factory):
    sim = await simulator_factory(markets=3, block_time=0.1)
    exp = await exporter_factory(sim)
    await wait_ready(exp)
    tickers = exp.pool.markets
    assert len(tickers) == 3
    first = await metrics(exp)
    second = await wait_for(
        _moved(exp, first, ("dydx_updates_total", "dydx_ws_received_bytes_total", "dydx_trades_total")),
        timeout=10,
    )
    missing = sorted(set(CONTRACT) - names(second))
    assert not missing, f"contract metrics missing: {missing}"
    assert metric_value(second, "dydx_component_up", component="websocket") == 1
    assert metric_value(second, "dydx_component_up", component="rest") == 1
    assert metric_value(second, "dydx_ws_connected", connection="conn-0") == 1
    for channel in (ch.TRADES, ch.ORDERBOOK):
        assert metric_value(second, "dydx_subscriptions", channel=channel, state="active") == 3
    assert (metric_value(second, "dydx_block_height") or 0) > 0
    assert metric_sum(second, "dydx_orderbook_levels") > 0 and metric_sum(second, "dydx_oracle_price") > 0

    async def pinged() -> Any:
        return metric_sum(await metrics(exp), "dydx_ws_ping_rtt_seconds_count") > 0

    await wait_for(pinged, timeout=5, message="the exporter's own pings are answered and timed")


def _moved(exp: Any, before: Any, counters: tuple[str, ...]) -> Any:
    async def check() -> Any:
        now = await metrics(exp)
        if all(metric_sum(now, c) > metric_sum(before, c) for c in counters):
            return now
        return None

    return check


@pytest.mark.slow
async def test_more_markets_than_one_link_carries(simulator_factory, exporter_factory):
    sim = await simulator_factory(markets=40, block_time=0.2)
    exp = await exporter_factory(sim, channels=(ch.MARKETS, ch.TRADES, ch.BLOCK_HEIGHT))
    await wait_ready(exp, timeout=20)
    samples = await metrics(exp)
    assert metric_value(samples, "dydx_ws_connected", connection="conn-0") == 1
    assert metric_value(samples, "dydx_ws_connected", connection="conn-1") == 1
    assert metric_value(samples, "dydx_ws_connected", connection="conn-2") is None
    assert metric_value(samples, "dydx_subscriptions", channel=ch.TRADES, state="active") == 40
    assert metric_sum(samples, "dydx_subscription_failures_total") == 0
    assert [link.count(ch.TRADES) for link in exp.pool.links] == [32, 8]


async def test_shards_cover_every_market_exactly_once(simulator_factory, exporter_factory):
    sim = await simulator_factory(markets=12, block_time=0.2)
    channels = (ch.MARKETS, ch.TRADES)
    a = await exporter_factory(sim, channels=channels, shard_index=0, shard_count=2)
    b = await exporter_factory(sim, channels=channels, shard_index=1, shard_count=2)
    await wait_ready(a)
    await wait_ready(b)
    assert a.pool.markets.isdisjoint(b.pool.markets)
    everything = set((await truth(sim)).keys())
    published = {
        dict(labels)["market"] for name, labels in everything if name.startswith("dydx_simulator_trades")
    }
    union = a.pool.markets | b.pool.markets
    assert len(union) == 12 and (not published or published <= union)
    sa, sb = await metrics(a), await metrics(b)
    active = [metric_value(s, "dydx_subscriptions", channel=ch.TRADES, state="active") for s in (sa, sb)]
    assert sum(v or 0 for v in active) == 12


@pytest.mark.parametrize("batched", [False, True])
async def test_nothing_lost_between_resume_and_pause(simulator_factory, exporter_factory, batched):
    sim = await simulator_factory(markets=4, block_time=0.05, rate=5.0, paused=True)
    exp = await exporter_factory(sim, channels=(ch.MARKETS, ch.TRADES, ch.BLOCK_HEIGHT), batched=batched)
    await wait_ready_subscribed(exp, channel=ch.TRADES, count=4)
    await control(sim, "POST", "/control/resume")
    await wait_for(
        lambda: _published_at_least(sim, 150), timeout=20, interval=0.1, message="simulator published trades"
    )
    await control(sim, "POST", "/control/pause")
    expected = metric_sum(await truth(sim), "dydx_simulator_trades_published_total")

    async def caught_up() -> Any:
        got = metric_sum(await metrics(exp), "dydx_trades_total")
        return got if got == expected else None

    try:
        await wait_for(caught_up, timeout=10, interval=0.1)
    finally:
        got = metric_sum(await metrics(exp), "dydx_trades_total")
        assert got == expected, f"exporter counted {got} trades, simulator published {expected}"
    assert expected >= 150


async def _published_at_least(sim: Any, n: int) -> Any:
    return metric_sum(await truth(sim), "dydx_simulator_trades_published_total") >= n


async def wait_ready_subscribed(exp: Any, channel: str, count: int) -> None:
    """Ready except for data freshness (a paused simulator sends no data): every subscription active."""

    async def subscribed() -> Any:
        s = await metrics(exp)
        return metric_value(s, "dydx_subscriptions", channel=channel, state="active") == count

    await wait_for(subscribed, timeout=15, message=f"{count} {channel} subscriptions active")


@pytest.mark.slow
async def test_latency_median_tells_the_simulated_lag(simulator_factory, exporter_factory):
    lag = 2.0
    sim = await simulator_factory(markets=3, block_time=0.05)
    exp = await exporter_factory(sim, channels=(ch.MARKETS, ch.TRADES, ch.BLOCK_HEIGHT), stale_after=30.0)
    await wait_ready(exp)
    await fault(sim, "lag", seconds=lag)
    await asyncio.sleep(0.3)  # frames stamped before the lag took effect drain out
    before = await metrics(exp)
    await wait_for(
        lambda: _latency_count_grew(exp, before, ch.BLOCK_HEIGHT, 40),
        timeout=15,
        interval=0.2,
        message="samples",
    )
    after = await metrics(exp)
    for channel in (ch.BLOCK_HEIGHT, ch.TRADES):
        median = histogram_quantile(0.5, before, after, "dydx_feed_latency_seconds", channel=channel)
        assert abs(median - lag) <= 0.1 * lag, f"{channel}: median {median:.3f}s for a lag of {lag}s"


async def _latency_count_grew(exp: Any, before: Any, channel: str, n: int) -> Any:
    now = await metrics(exp)
    name = "dydx_feed_latency_seconds_count"
    return metric_sum(now, name, channel=channel) - metric_sum(before, name, channel=channel) >= n


def histogram_quantile(q: float, before: Any, after: Any, name: str, **labels: str) -> float:
    """PromQL's histogram_quantile over the increase between two scrapes."""
    want = set(labels.items())
    buckets: list[tuple[float, float]] = []
    for (sample, lbls), value in after.items():
        if sample != name + "_bucket" or not want <= set(lbls):
            continue
        le = dict(lbls)["le"]
        buckets.append((float(le), value - before.get((sample, lbls), 0.0)))
    buckets.sort()
    total = buckets[-1][1]
    assert total > 0, f"no {name} samples for {labels}"
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(cumulative - below, 1e-12)
        lower, below = upper, cumulative
    return lower


async def test_rest_down_at_start_still_serves_metrics_and_recovers(simulator_factory, exporter_factory):
    sim = await simulator_factory(markets=3, block_time=0.1)
    await fault(sim, "rest_error", seconds=1.5, status=503, snapshots=False)
    exp = await exporter_factory(sim, backoff_initial=0.2, backoff_max=0.5)
    samples = await metrics(exp)  # /metrics answers at once
    assert metric_value(samples, "dydx_component_up", component="rest") == 0
    status, _ = await readyz(exp)
    await wait_ready(exp, timeout=15)  # the v4_markets snapshot finds the markets even before REST is back

    async def rest_up() -> Any:
        return metric_value(await metrics(exp), "dydx_component_up", component="rest") == 1

    await wait_for(rest_up, timeout=10)
    assert exp.discovery.fetches >= 2
    assert status in (200, 503)


async def test_web_config_basic_auth_guards_metrics(simulator_factory, exporter_factory, tmp_path):
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    sim = await simulator_factory(markets=1, block_time=0.2)
    exp = await exporter_factory(sim, web_config_file=str(web_config))
    async with aiohttp.ClientSession() as session:
        async with session.get(exp.metrics_url) as resp:
            assert resp.status == 401
        headers = {"Authorization": aiohttp.encode_basic_auth("prometheus", "s3cret")}
        async with session.get(exp.metrics_url, headers=headers) as resp:
            assert resp.status == 200
            assert "dydx_exporter_build_info" in await resp.text()


async def test_candles_are_subscribed_per_resolution(simulator_factory, exporter_factory):
    sim = await simulator_factory(markets=2, block_time=0.1)
    exp = await exporter_factory(
        sim, channels=(ch.MARKETS, ch.CANDLES, ch.BLOCK_HEIGHT), candle_resolutions=("1MIN", "5MINS")
    )
    await wait_ready(exp)
    samples = await metrics(exp)
    assert metric_value(samples, "dydx_subscriptions", channel=ch.CANDLES, state="active") == 4
    assert metric_value(samples, "dydx_subscriptions", channel=ch.TRADES, state="active") in (None, 0)
