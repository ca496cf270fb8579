"""Failures before a link is ever up, and storms: DNS, TLS, REST down or slow at start-up, 429 with
Retry-After on the WebSocket handshake and on REST, a server that rejects every handshake, a server that
drops every connection. The exporter keeps serving /metrics, counts every failed attempt by reason, backs
off (counted on the simulator's side), never trips the server's subscribe rate limit, and leaks nothing
while it retries.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from exporter.protocol import channels as ch
from exporter.service import Exporter
from tests.fixtures.simulator import control
from tests.fixtures.support import metrics, readyz, wait_ready
from tests.helpers import metric_sum, metric_value, wait_for
from tests.reliability.support import Slack, handshakes, resources, settle, subscribes, truth

pytestmark = pytest.mark.timeout(45)

#: Two cores shared with the rest of the suite: scheduling noise on top of a documented bound.
MARGIN = 2.5


async def failures(exp: Exporter, reason: str) -> float:
    return metric_sum(await metrics(exp), "dydx_ws_connection_failures_total", reason=reason)


async def _serves_metrics_while_retrying(exp: Exporter, reason: str, attempts: int = 3) -> None:
    samples = await metrics(exp)
    assert metric_value(samples, "dydx_component_up", component="websocket") == 0
    await wait_for(
        lambda: _at_least(exp, reason, attempts), timeout=10, message=f"{attempts} failures of {reason}"
    )
    status, body = await readyz(exp)
    assert status == 503 and f"connect failed: {reason}" in body, body


async def _at_least(exp: Exporter, reason: str, n: float) -> bool:
    return await failures(exp, reason) >= n


async def _retries_without_leaking(exp: Exporter, reason: str, seconds: float = 1.5) -> float:
    """Failed attempts during `seconds` (each one's socket and task must be gone afterwards)."""
    baseline = resources()
    before = await failures(exp, reason)
    await asyncio.sleep(seconds)  # a window of retries, measured on both sides
    grew = await failures(exp, reason) - before
    await settle(baseline, Slack(), timeout=3)
    return grew


async def test_dns_failure_is_counted_and_retried_with_backoff(simulator_factory, exporter_factory):
    # The reserved .invalid TLD never resolves: nothing leaves the machine.
    sim = await simulator_factory(markets=2)
    exp = await exporter_factory(
        sim, ws_url="ws://dydx-indexer.invalid/v4/ws", rest_url="http://dydx-indexer.invalid"
    )
    await _serves_metrics_while_retrying(exp, "dns")
    samples = await metrics(exp)
    assert metric_value(samples, "dydx_component_up", component="rest") == 0
    assert metric_sum(samples, "dydx_rest_requests_total", code="connection_error") >= 1
    # backoff 0.05..0.5 s with full jitter: ~4 attempts/s at the cap; a hot loop would be thousands.
    assert 1 <= await _retries_without_leaking(exp, "dns") <= 15


async def test_tls_handshake_failure_is_counted_as_tls(simulator_factory, exporter_factory):
    sim = await simulator_factory(markets=2)
    exp = await exporter_factory(sim, ws_url=f"wss://127.0.0.1:{sim.port}/v4/ws")  # plain port
    await _serves_metrics_while_retrying(exp, "tls")
    assert 1 <= await _retries_without_leaking(exp, "tls") <= 15
    assert metric_value(await metrics(exp), "dydx_component_up", component="rest") == 1


async def test_rest_slow_at_start_up_never_holds_the_exporter(simulator_factory, exporter_factory):
    sim = await simulator_factory(markets=3, block_time=0.1)
    await control(sim, "POST", "/control/faults", {"kind": "rest_slow", "seconds": 4.0, "delay": 3.0})
    began = time.monotonic()
    exp = await exporter_factory(sim, discovery_timeout=1.0, backoff_max=0.5)
    samples = await metrics(exp)
    assert time.monotonic() - began < 1.0, "start() and the first scrape must not wait for REST"
    assert metric_value(samples, "dydx_component_up", component="rest") == 0

    async def timed_out() -> bool:
        return metric_sum(await metrics(exp), "dydx_rest_requests_total", code="timeout") >= 2

    await wait_for(timed_out, timeout=6, message="REST timeouts counted and retried")

    async def rest_up() -> bool:
        return metric_value(await metrics(exp), "dydx_component_up", component="rest") == 1

    await wait_for(rest_up, timeout=4.0 + 1.0 + 0.5 + MARGIN, message="REST up once it answers in time")
    await wait_ready(exp)


async def test_rest_429_retry_after_in_milliseconds_is_honoured(simulator_factory, exporter_factory):
    # comlink: 1 request per 10 s window here; the 429 carries Retry-After in milliseconds (~9000).
    sim = await simulator_factory(markets=2, block_time=0.1, rest_rate_limit=1)
    exp = await exporter_factory(sim, backoff_initial=0.05, backoff_max=0.5)
    await wait_ready(exp)
    exp.discovery.refresh_now()

    async def limited() -> bool:
        samples = await metrics(exp)
        return metric_sum(samples, "dydx_rest_requests_total", code="429") >= 1

    await wait_for(limited, timeout=5, message="REST 429 seen")
    await asyncio.sleep(2.0)  # a backoff of 0.05..0.5 s would have retried ~8 times by now
    rest_429 = metric_sum(await truth(sim), "dydx_simulator_rest_requests_total", code="429")
    assert rest_429 == 1, f"retried {rest_429 - 1} times inside Retry-After"
    assert (await readyz(exp))[0] == 200  # the WebSocket feed never depended on REST


async def test_ws_429_retry_after_spaces_the_handshakes(simulator_factory, exporter_factory):
    """A 429 with Retry-After: 1 for 3 s: the exporter comes back at most ~once per second per link, and
    every refused handshake is counted exactly once."""
    sim = await simulator_factory(markets=2, block_time=0.1)
    exp = await exporter_factory(sim, backoff_initial=0.05, backoff_max=0.5)
    await wait_ready(exp)
    before_exp = await failures(exp, "http_429")
    await control(sim, "POST", "/control/faults", {"kind": "reject", "seconds": 3.0, "retry_after": 1})
    await control(sim, "POST", "/control/faults", {"kind": "disconnect", "code": 1012})
    await wait_ready(exp, timeout=3.0 + 1.0 + 0.5 + MARGIN)
    rejected = metric_sum(await truth(sim), "dydx_simulator_handshakes_rejected_total")
    # 3 s of refusals at >= 1 s apart: at most 4 (one right away, then after 1, 2 and 3 s); without
    # Retry-After the 0.05..0.5 s backoff would have made ~12.
    assert 1 <= rejected <= 4
    assert await failures(exp, "http_429") - before_exp == rejected


async def test_reject_storm_backoff_holds(simulator_factory, exporter_factory):
    """Every handshake refused (503, no Retry-After) for 4 s on 3 links: handshakes per link stay within
    what the full-jitter backoff allows, and the feed comes back within the cap after the storm."""
    storm, backoff_max = 4.0, 1.0
    sim = await simulator_factory(markets=10, block_time=0.1)
    exp = await exporter_factory(
        sim, channels=(ch.MARKETS, ch.TRADES, ch.BLOCK_HEIGHT), max_subscriptions=4, backoff_max=backoff_max
    )
    await wait_ready(exp)
    links = len(exp.pool.links)
    assert links == 3
    baseline = resources()
    before = handshakes(await truth(sim))
    await control(sim, "POST", "/control/faults", {"kind": "reject", "seconds": storm, "status": 503})
    await control(sim, "POST", "/control/faults", {"kind": "disconnect", "code": 1012})
    began = time.monotonic()
    await wait_for(lambda: time.monotonic() - began >= storm, timeout=storm + 1)
    per_link = (handshakes(await truth(sim)) - before) / links
    # Delays are uniform in [0, min(1.0, 0.05 * 2**n)]: ~5 attempts to reach the cap, then ~2 per second.
    assert per_link <= 16, f"{per_link:.1f} handshakes per link in {storm}s"
    await wait_ready(exp, timeout=backoff_max + MARGIN + 1.0)
    await settle(baseline, Slack(), timeout=5)


async def test_flapping_server_never_trips_the_subscribe_rate_limit(simulator_factory, exporter_factory):
    """The server drops every connection every 0.3 s for 4 s. Each reconnect resubscribes everything with
    fresh snapshots; across all reconnects a (channel, id) is subscribed at most twice a second on average,
    and the server's per-connection limit (more than 2 per (channel, id) per second → 1008) never trips."""
    storm = 4.0
    sim = await simulator_factory(markets=4, block_time=0.1)
    exp = await exporter_factory(sim, backoff_initial=0.2, backoff_max=2.0, stable_after=5.0)
    await wait_ready(exp)
    keys = 2 + 2 * 4  # markets + block height, then trades and orderbook per market
    before = await truth(sim)
    began = time.monotonic()
    while time.monotonic() - began < storm:
        await control(sim, "POST", "/control/faults", {"kind": "disconnect", "code": 1012})
        await asyncio.sleep(0.3)
    elapsed = time.monotonic() - began
    after = await truth(sim)
    per_key_per_s = (subscribes(after) - subscribes(before)) / keys / elapsed
    assert per_key_per_s <= 2.0, f"{per_key_per_s:.2f} subscribes per (channel, id) per second"
    assert metric_sum(after, "dydx_simulator_connections_closed_total", code="1008") == 0
    samples = await metrics(exp)
    assert metric_sum(samples, "dydx_subscription_failures_total", reason="subscribe_rate_limited") == 0
    await wait_ready(exp, timeout=2.0 + MARGIN + 1.0)


async def _count(exp: Exporter, name: str, **labels: str) -> Any:
    return metric_sum(await metrics(exp), name, **labels)
