"""The fault matrix: every fault kind of the simulator alone, and meaningful pairs at once, against the real
exporter over real sockets. For each case: the metric that counts it moves; /readyz goes red and green
again when the fault breaks the feed (and stays green when it does not); readiness is back within the
documented bound (the fault's length + --feed.backoff-max + a scheduling margin); once recovered and the
simulator paused, the exporter's books, best prices, oracle prices, last trades and block height equal the
simulator's ground truth (GET /control/truth) for every market; and tasks, fds and sockets return to their
baseline. The exporter's settings come from argv (Settings.from_sources), as the CLI builds them.

tests/reliability/test_faults.py checks each fault's counting in detail; this adds readiness over time,
the recovery bound, pairs of faults, and leaks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from exporter.protocol import channels as ch
from exporter.service import Exporter
from tests.fixtures.simulator import control
from tests.fixtures.support import metrics, wait_ready
from tests.groundtruth.support import cli_settings, equal_after_traffic
from tests.helpers import metric_sum, wait_for
from tests.reliability.support import ReadinessTrace, Slack, resources, settle, sum_any

pytestmark = [pytest.mark.timeout(40), pytest.mark.slow]

BACKOFF_MAX = 0.5
#: Two cores shared with the rest of the suite: scheduling noise on top of the documented bound.
MARGIN = 2.5
#: Keeps subscriptions pending this long after every (re)connect, so the red phase of /readyz lasts long
#: enough to be seen by a poller (the real indexer's comlink fetch takes tens to hundreds of ms).
SNAPSHOT_DELAY = 0.3
MARKET = "BTC-USD"

#: (sample name, label items); a label value "a|b" matches either (see sum_any).
Metric = tuple[str, tuple[tuple[str, str], ...]]
#: How a dead link is counted: the watchdog's reasons (a handshake without `connected`, no server ping, a
#: rated channel silent) and the generic `timeout` of a handshake that never completes.
DEAD_LINK = "timeout|silent|ping_timeout|stale"


def m(name: str, **labels: str) -> Metric:
    return (name, tuple(sorted(labels.items())))


@dataclass(frozen=True)
class Case:
    faults: tuple[dict[str, Any], ...]  # POSTed in order to /control/faults
    moves: tuple[Metric, ...]  # each must grow
    breaks_feed: bool  # /readyz must go red, then green
    lasts: float = 0.0  # how long the fault is in force (the recovery bound starts after it)
    extra_bound: float = 0.0  # a Retry-After, a handshake timeout: waits the exporter is told to make


def failures(reason: str) -> Metric:
    return m("dydx_ws_connection_failures_total", reason=reason)


def disconnects(code: str) -> Metric:
    return m("dydx_ws_disconnects_total", code=code)


DISCONNECT = {"kind": "disconnect", "code": 1012}
HIGH_LATENCY = m("dydx_feed_latency_seconds_count", channel=ch.BLOCK_HEIGHT)

CASES: dict[str, Case] = {
    # --- alone ---
    "disconnect-1012": Case((DISCONNECT,), (disconnects("1012"), m("dydx_ws_reconnects_total")), True),
    "disconnect-1011": Case(({"kind": "disconnect", "code": 1011},), (disconnects("1011"),), True),
    "disconnect-1008": Case(({"kind": "disconnect", "code": 1008},), (disconnects("1008"),), True),
    "disconnect-abrupt": Case(({"kind": "disconnect", "abrupt": True},), (disconnects("1006"),), True),
    "stall": Case(({"kind": "stall", "seconds": 2.0},), (failures(DEAD_LINK),), True, lasts=2.0),
    "stall-block-height": Case(
        ({"kind": "stall", "seconds": 1.5, "channel": ch.BLOCK_HEIGHT},), (failures(DEAD_LINK),), True, 1.5
    ),
    "malformed": Case(({"kind": "malformed", "count": 3},), (m("dydx_messages_invalid_total"),), False),
    "error": Case(({"kind": "error"},), (m("dydx_ws_errors_total", reason="internal_error"),), False),
    "gap": Case(({"kind": "gap", "count": 2},), (m("dydx_message_id_gaps_total"),), False),
    "cross": Case(
        ({"kind": "cross", "market": MARKET, "seconds": 1.0},),
        (m("dydx_orderbook_crossed_total", market=MARKET),),
        False,
        lasts=1.0,
    ),
    "lag": Case(({"kind": "lag", "seconds": 1.0, "duration": 1.5},), (HIGH_LATENCY,), False, lasts=1.5),
    "reject-503": Case(
        ({"kind": "reject", "seconds": 1.0, "status": 503}, DISCONNECT), (failures("http_error"),), True, 1.0
    ),
    # Later socks' subscription-limit abuse drop (4008): each link stays away retryAfterSeconds (+10 %).
    "penalty": Case(({"kind": "penalty", "seconds": 1},), (disconnects("4008"),), True, extra_bound=1.1),
    "silent": Case(
        ({"kind": "silent", "seconds": 1.0}, DISCONNECT), (failures(DEAD_LINK),), True, 1.0, extra_bound=1.0
    ),
    "rest-error-snapshots": Case(
        ({"kind": "rest_error", "seconds": 0.8, "status": 500}, DISCONNECT),
        (m("dydx_subscription_failures_total", reason="snapshot_fetch_failed"),),
        True,
        lasts=0.8,
    ),
    "rest-slow-snapshots": Case(
        ({"kind": "rest_slow", "seconds": 1.0, "delay": 0.6}, DISCONNECT),
        (disconnects("1012"),),
        True,
        lasts=1.0,
    ),
    # The chain apart from the indexer (issue 14): a halt starves the links' watchdog, the lags are late
    # data that must not break readiness, and the RPC faults touch only the chain's RPC.
    "chain-halt": Case(({"kind": "chain_halt", "seconds": 2.0},), (failures(DEAD_LINK),), True, lasts=2.0),
    "indexer-lag": Case(
        ({"kind": "indexer_lag", "seconds": 0.6, "duration": 1.5},), (HIGH_LATENCY,), False, lasts=1.5
    ),
    "rest-lag": Case(({"kind": "rest_lag", "blocks": 5, "seconds": 1.0},), (), False, lasts=1.0),
    # A level the stream carries and the indexer's book does not (issue 15): held, then removed at the end.
    "ghost-level": Case(({"kind": "ghost_level", "market": MARKET, "seconds": 1.0},), (), False, lasts=1.0),
    "oracle-freeze": Case(
        ({"kind": "oracle_freeze", "market": MARKET, "seconds": 1.0},), (), False, lasts=1.0
    ),
    "schema-change": Case(
        ({"kind": "schema_change", "channel": ch.MARKETS, "seconds": 1.0}, DISCONNECT),
        (m("dydx_schema_unknown_fields_total", channel=ch.MARKETS),),
        True,
        lasts=1.0,
    ),
    "candle-gap": Case(({"kind": "candle_gap", "market": MARKET, "resolution": "1MIN"},), (), False),
    "oracle-skew": Case(
        ({"kind": "oracle_skew", "market": MARKET, "ratio": 0.1, "seconds": 1.0},), (), False, lasts=1.0
    ),
    "link-lag": Case(
        ({"kind": "link_lag", "seconds": 0.6, "duration": 1.5},), (HIGH_LATENCY,), False, lasts=1.5
    ),
    "rpc-down": Case(({"kind": "rpc_down", "seconds": 1.0},), (), False, lasts=1.0),
    "rpc-catching-up": Case(({"kind": "rpc_catching_up", "seconds": 1.0},), (), False, lasts=1.0),
    # --- pairs ---
    "lag+cross": Case(
        (
            {"kind": "lag", "seconds": 1.0, "duration": 1.5},
            {"kind": "cross", "market": MARKET, "seconds": 1.0},
        ),
        (HIGH_LATENCY, m("dydx_orderbook_crossed_total", market=MARKET)),
        False,
        lasts=1.5,
    ),
    "malformed+stall": Case(
        ({"kind": "malformed", "count": 2}, {"kind": "stall", "seconds": 2.0}),
        (m("dydx_messages_invalid_total"), failures(DEAD_LINK)),
        True,
        lasts=2.0,
    ),
    "disconnect+reject-429": Case(
        ({"kind": "reject", "seconds": 1.0, "status": 429, "retry_after": 1}, DISCONNECT),
        (failures("http_429"), disconnects("1012")),
        True,
        lasts=1.0,
        extra_bound=1.0,
    ),
    "gap+error": Case(
        ({"kind": "gap", "count": 3}, {"kind": "error"}),
        (m("dydx_message_id_gaps_total"), m("dydx_ws_errors_total", reason="internal_error")),
        False,
    ),
    "abrupt+rest-error": Case(
        ({"kind": "rest_error", "seconds": 0.8, "status": 503}, {"kind": "disconnect", "abrupt": True}),
        (disconnects("1006"), m("dydx_subscription_failures_total", reason="snapshot_fetch_failed")),
        True,
        lasts=0.8,
    ),
}


@pytest.fixture
async def feed(simulator_factory, exporter_factory) -> tuple[Any, Exporter]:
    # Later socks' subscription-limit abuse rule on, as it may be in production: no case may earn a 4008
    # but the one that forces it (checked after each case).
    sim = await simulator_factory(
        markets=3,
        block_time=0.1,
        ping_interval=0.3,
        pong_timeout=2.0,
        snapshot_delay=SNAPSHOT_DELAY,
        subscription_limit_abuse=True,
    )
    flags = (f"--feed.backoff-max={BACKOFF_MAX}", "--feed.silence-timeout=1", "--feed.ping-timeout=1.5",
             "--feed.handshake-timeout=1")  # fmt: skip
    exp = await exporter_factory(cli_settings(sim, *flags))
    await wait_ready(exp)
    return sim, exp


async def _sum(exp: Exporter, metric: Metric) -> float:
    name, labels = metric
    return sum_any(await metrics(exp), name, **dict(labels))


@pytest.mark.parametrize("name", list(CASES))
async def test_fault_is_counted_recovered_within_bound_and_leaks_nothing(feed, name):
    case = CASES[name]
    sim, exp = feed
    lagged_before = await _lagged_samples(exp) if HIGH_LATENCY in case.moves else 0.0
    before = {m: await _sum(exp, m) for m in case.moves if m != HIGH_LATENCY}
    baseline = resources()
    async with ReadinessTrace(exp.url) as trace:
        began = time.monotonic()
        for fault in case.faults:
            await control(sim, "POST", "/control/faults", fault)
        for metric, start in before.items():
            await wait_for(partial(_grew, exp, metric, start), timeout=10, message=f"{name}: {metric} grew")
        if HIGH_LATENCY in case.moves:
            await wait_for(
                lambda: _lagged_grew(exp, lagged_before), timeout=10, message=f"{name}: lagged samples"
            )
        bound = case.lasts + case.extra_bound + BACKOFF_MAX + MARGIN
        if case.breaks_feed:
            green = await trace.wait_green_after(began, timeout=bound + 5)
            took = green - began
            assert took <= bound, f"{name}: ready again after {took:.2f}s > {bound:.2f}s: {trace.describe()}"
        else:
            await wait_for(lambda: time.monotonic() - began >= case.lasts, timeout=case.lasts + 1)
            assert trace.went_red_since(began) is None, f"{name} must not break readiness: {trace.describe()}"
    await equal_after_traffic(exp.metrics_url, sim)
    forced = sum(1 for fault in case.faults if fault["kind"] == "penalty")
    assert (sim.stats.closes.get("4008", 0) > 0) == (forced > 0), f"{name}: 4008s {dict(sim.stats.closes)}"
    await wait_ready(exp, timeout=5)
    await settle(baseline, Slack(), timeout=5)


async def _grew(exp: Exporter, metric: Metric, start: float) -> bool:
    return await _sum(exp, metric) > start


async def _lagged_samples(exp: Exporter) -> float:
    """Block-height frames observed with a feed latency above 0.5 s."""
    samples = await metrics(exp)
    name = "dydx_feed_latency_seconds_bucket"
    total = metric_sum(samples, name, channel=ch.BLOCK_HEIGHT, le="+Inf")
    fast = max(
        (
            v
            for (n, labels), v in samples.items()
            if n == name
            and dict(labels).get("channel") == ch.BLOCK_HEIGHT
            and dict(labels)["le"] != "+Inf"
            and float(dict(labels)["le"]) <= 0.5
        ),
        default=0.0,
    )
    return total - fast


async def _lagged_grew(exp: Exporter, before: float) -> bool:
    return await _lagged_samples(exp) >= before + 3


async def test_close_mid_snapshot_leaves_no_pending_state(simulator_factory, exporter_factory):
    """A disconnect while every `subscribed` frame is still pending (slow snapshot fetch): the snapshots in
    flight are abandoned on both sides, the link reconnects, and every subscription ends up active once."""
    sim = await simulator_factory(markets=3, block_time=0.1, snapshot_delay=0.1)
    exp = await exporter_factory(sim, backoff_max=BACKOFF_MAX)
    await wait_ready(exp)
    baseline = resources()
    await control(sim, "POST", "/control/faults", {"kind": "rest_slow", "seconds": 3.0, "delay": 1.5})
    await control(sim, "POST", "/control/faults", DISCONNECT)

    async def pending() -> bool:
        samples = await metrics(exp)
        return metric_sum(samples, "dydx_subscriptions", state="pending") >= 4

    await wait_for(pending, timeout=5, message="subscriptions pending behind the slow snapshot")
    await control(sim, "POST", "/control/faults", DISCONNECT)  # mid-snapshot
    await wait_ready(exp, timeout=3.0 + 1.5 + BACKOFF_MAX + MARGIN)
    samples = await metrics(exp)
    assert metric_sum(samples, "dydx_subscriptions", state="pending") == 0
    assert metric_sum(samples, "dydx_subscriptions", state="failed") == 0
    assert metric_sum(samples, "dydx_subscriptions", channel=ch.TRADES, state="active") == 3
    assert sum(len(s._tasks) for s in sim.sessions) <= 2 * len(sim.sessions)  # writer + heartbeat only
    await settle(baseline, Slack(), timeout=5)
