"""Every fault kind of the simulator moves the right metric, and the exporter recovers on its own.

Timings come from Settings.for_simulator (backoff 0.05..0.5 s) plus the overrides below, so "recovers
within the backoff bound" means ready again within the fault's duration + backoff_max + a scheduling margin.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from exporter.protocol import channels as ch
from exporter.service import Exporter
from tests.fixtures.simulator import control
from tests.fixtures.support import fault, metrics, readyz, wait_not_ready, wait_ready
from tests.helpers import metric_sum, metric_value, wait_for

pytestmark = pytest.mark.timeout(45)

BACKOFF_MAX = 0.5
MARGIN = 3.0  # two cores shared with the rest of the suite


@pytest.fixture
async def feed(simulator_factory, exporter_factory) -> tuple[Any, Exporter]:
    sim = await simulator_factory(markets=3, block_time=0.1, ping_interval=0.3, pong_timeout=2.0)
    exp = await exporter_factory(sim, backoff_max=BACKOFF_MAX, silence_timeout=1.0, ping_timeout=1.5)
    await wait_ready(exp)
    return sim, exp


async def value(exp: Exporter, name: str, **labels: str) -> float:
    return metric_sum(await metrics(exp), name, **labels)


async def grows(
    exp: Exporter, name: str, by: float = 1, timeout: float = 10, since: float | None = None, **labels: str
) -> float:
    """Waits until the sum of `name{labels}` has grown by `by` from `since` (default: now)."""
    start = await value(exp, name, **labels) if since is None else since

    async def grown() -> Any:
        value = metric_sum(await metrics(exp), name, **labels)
        return value if value >= start + by else None

    result: float = await wait_for(grown, timeout=timeout, message=f"{name}{labels} +{by}")
    return result


async def after(action: Callable[[], Awaitable[Any]], exp: Exporter, name: str, **labels: str) -> float:
    """Runs `action` and returns how much `name{labels}` grew by the time the exporter is ready again."""
    before = metric_sum(await metrics(exp), name, **labels)
    await action()
    await wait_for(
        lambda: _grew(exp, name, before, labels), timeout=10, message=f"{name}{labels} moved after the fault"
    )
    await wait_ready(exp, timeout=BACKOFF_MAX + MARGIN)
    return metric_sum(await metrics(exp), name, **labels) - before


async def _grew(exp: Exporter, name: str, before: float, labels: dict[str, str]) -> Any:
    return metric_sum(await metrics(exp), name, **labels) > before


@pytest.mark.parametrize(("params", "code"), [({"code": 1012}, "1012"), ({"abrupt": True}, "1006")])
async def test_disconnect_is_counted_by_code_and_resubscribed(feed, params, code):
    sim, exp = feed
    before = await metrics(exp)
    grew = await after(
        lambda: fault(sim, "disconnect", **params), exp, "dydx_ws_disconnects_total", code=code
    )
    assert grew == 1
    samples = await metrics(exp)
    assert (
        metric_sum(samples, "dydx_ws_reconnects_total") == metric_sum(before, "dydx_ws_reconnects_total") + 1
    )
    assert metric_value(samples, "dydx_subscriptions", channel=ch.TRADES, state="active") == 3
    await grows(exp, "dydx_trades_total", by=1)  # data flows again after the fresh snapshots


async def test_stall_without_pings_kills_the_link_and_recovers(feed):
    sim, exp = feed
    watchdog = ("stale", "ping_timeout")  # whichever deadline the stall crosses first
    before = {r: await value(exp, "dydx_ws_connection_failures_total", reason=r) for r in watchdog}
    await fault(sim, "stall", seconds=2.0)
    reason = await wait_not_ready(exp, timeout=5)
    assert "conn-0" in reason or "processor" in reason
    began = time.monotonic()

    async def link_declared_dead() -> bool:
        now = {r: await value(exp, "dydx_ws_connection_failures_total", reason=r) for r in watchdog}
        return any(now[r] > before[r] for r in watchdog)

    await wait_for(link_declared_dead, timeout=5, message="stall counted as stale or ping_timeout")
    await wait_ready(exp, timeout=2.0 + BACKOFF_MAX + MARGIN)
    assert time.monotonic() - began < 2.0 + BACKOFF_MAX + MARGIN


async def test_block_height_silence_marks_the_link_dead(feed):
    sim, exp = feed
    before = await value(exp, "dydx_ws_connection_failures_total", reason="stale")
    await fault(sim, "stall", seconds=1.5, channel=ch.BLOCK_HEIGHT)
    await grows(exp, "dydx_ws_connection_failures_total", reason="stale", timeout=5, since=before)
    await wait_ready(exp, timeout=1.5 + BACKOFF_MAX + MARGIN)


async def test_malformed_frames_are_counted_and_the_feed_keeps_going(feed):
    sim, exp = feed
    before = metric_sum(await metrics(exp), "dydx_messages_invalid_total")
    await fault(sim, "malformed", count=3)
    await grows(exp, "dydx_updates_total", by=10)
    assert metric_sum(await metrics(exp), "dydx_messages_invalid_total") >= before + 3
    assert (await readyz(exp))[0] == 200


async def test_error_frame_is_counted_by_bounded_reason(feed):
    sim, exp = feed
    before = await value(exp, "dydx_ws_errors_total", reason="internal_error")
    await fault(sim, "error", text=ch.ERR_INTERNAL)
    await grows(exp, "dydx_ws_errors_total", since=before, reason="internal_error")


async def test_message_id_gap_is_counted(feed):
    sim, exp = feed
    before = await value(exp, "dydx_message_id_gaps_total")
    await fault(sim, "gap", count=2)
    await grows(exp, "dydx_message_id_gaps_total", timeout=10, since=before)


async def test_crossed_book_is_counted_not_fatal(feed):
    sim, exp = feed
    market = sorted(exp.pool.markets)[0]
    before = await value(exp, "dydx_orderbook_crossed_total", market=market)
    await fault(sim, "cross", market=market, seconds=1.0)
    await grows(exp, "dydx_orderbook_crossed_total", since=before, market=market)
    assert (await readyz(exp))[0] == 200


async def test_429_on_reconnect_honours_retry_after(feed):
    sim, exp = feed
    before = await value(exp, "dydx_ws_connection_failures_total", reason="http_429")
    await fault(sim, "reject", seconds=1.0, status=429, retry_after=1)
    await fault(sim, "disconnect", code=1012)
    await wait_not_ready(exp, timeout=5)
    await grows(exp, "dydx_ws_connection_failures_total", reason="http_429", timeout=5, since=before)
    began = time.monotonic()
    await wait_ready(exp, timeout=1.0 + 1.0 + BACKOFF_MAX + MARGIN)
    assert time.monotonic() - began >= 0.5  # waited out Retry-After instead of hammering


async def test_silent_server_is_abandoned_and_recovered(simulator_factory, exporter_factory):
    sim = await simulator_factory(markets=2, block_time=0.1)
    exp = await exporter_factory(sim, backoff_max=BACKOFF_MAX, handshake_timeout=0.5)
    await wait_ready(exp)
    before = await value(exp, "dydx_ws_connection_failures_total", reason="silent")
    await fault(sim, "silent", seconds=1.5)
    await fault(sim, "disconnect", code=1012)
    await grows(exp, "dydx_ws_connection_failures_total", reason="silent", timeout=5, since=before)
    await wait_ready(exp, timeout=1.5 + BACKOFF_MAX + MARGIN)


async def test_snapshot_fetch_failures_are_retried(feed):
    sim, exp = feed
    before = await value(exp, "dydx_subscription_failures_total", reason="snapshot_fetch_failed")
    await fault(sim, "rest_error", seconds=0.8, status=500, snapshots=True)
    await fault(sim, "disconnect", code=1012)
    await grows(
        exp, "dydx_subscription_failures_total", reason="snapshot_fetch_failed", timeout=5, since=before
    )
    await wait_ready(exp, timeout=0.8 + BACKOFF_MAX + MARGIN)
    samples = await metrics(exp)
    assert metric_value(samples, "dydx_subscriptions", channel=ch.TRADES, state="active") == 3


async def test_rest_slow_and_error_mark_rest_down_then_up(feed):
    sim, exp = feed
    before = await value(exp, "dydx_rest_requests_total", code="timeout")
    await fault(sim, "rest_slow", seconds=10.0, delay=3.0)  # until cleared below
    exp.discovery.refresh_now()
    await grows(exp, "dydx_rest_requests_total", code="timeout", timeout=5, since=before)
    assert metric_value(await metrics(exp), "dydx_component_up", component="rest") == 0
    await control(sim, "DELETE", "/control/faults")

    async def rest_up() -> Any:
        return metric_value(await metrics(exp), "dydx_component_up", component="rest") == 1

    await wait_for(rest_up, timeout=BACKOFF_MAX + MARGIN)
    assert (await readyz(exp))[0] == 200  # the WebSocket feed never depended on REST


async def test_listing_and_delisting_follow_the_markets_channel(feed):
    sim, exp = feed
    await control(sim, "POST", "/control/markets", {"list": "NEW-USD", "price": 1.5})

    async def listed() -> Any:
        s = await metrics(exp)
        return metric_value(s, "dydx_subscriptions", channel=ch.TRADES, state="active") == 4

    await wait_for(listed, timeout=10, message="NEW-USD subscribed")
    assert "NEW-USD" in exp.pool.markets
    victim = "ETH-USD" if "ETH-USD" in exp.pool.markets else sorted(exp.pool.markets)[0]
    await control(sim, "POST", "/control/markets", {"delist": victim})

    async def delisted() -> Any:
        s = await metrics(exp)
        return metric_value(s, "dydx_subscriptions", channel=ch.TRADES, state="active") == 3

    await wait_for(delisted, timeout=10, message=f"{victim} unsubscribed")
    assert victim not in exp.pool.markets
    samples = await metrics(exp)
    assert metric_value(samples, "dydx_oracle_price", market=victim) is None  # series removed, not stale
    assert metric_sum(samples, "dydx_orderbook_levels", market=victim) == 0
    await wait_ready(exp)


async def test_shutdown_while_the_server_stalls_finishes_within_5s(feed):
    sim, exp = feed
    await fault(sim, "stall", seconds=30.0)
    began = time.monotonic()
    await exp.stop()
    assert time.monotonic() - began < 5.0
    await control(sim, "DELETE", "/control/faults")
