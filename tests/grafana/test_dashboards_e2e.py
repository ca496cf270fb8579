"""End to end: the real Prometheus scrapes an HA pair of exporters fed by the simulator, and every query of
every panel of every dashboard, with its variables substituted as Grafana would, returns data.

Faults are injected first so that the panels a healthy feed leaves flat have something to show: server
error frames, malformed frames, a message-id gap (which fires the DydxMessageGaps alert, so `ALERTS` has
a series), a crossed book on the market the drilldown opens on, and another market paused. Then the
renderer draws every panel.

The README's pictures are not drawn here (two minutes of a fault run): `make dashboards-render` draws them
from a clean `make demo` (see README, Dashboards).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from grafana.build import DASHBOARDS_DIR
from grafana.promapi import PrometheusAPI, resolve_variables
from grafana.queries import PanelQuery, panel_queries, substitute
from grafana.render import Window, render_dashboard
from tests.fixtures.prom import scrape_config
from tests.fixtures.rules import RULES_DIR
from tests.fixtures.simulator import control
from tests.helpers import ConditionTimeout, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCRAPE_INTERVAL = 1.0
JOB = "dydx-exporter"

#: Panels excused from having data, each only while its PromQL condition returns nothing (for a metric
#: declared before anything feeds it). Empty: every panel must show data. Keep it that way.
EXCUSED_WHILE: dict[tuple[str, str], str] = {}


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS_DIR.glob("*.json"))]


def has_data(result: list[dict[str, Any]]) -> bool:
    """At least one real (not NaN) sample: a histogram_quantile over no observations is all NaN."""
    return any(value not in ("NaN", "+Inf", "-Inf") for series in result for _, value in series["values"])


def excused(api: PrometheusAPI, at: float) -> set[tuple[str, str]]:
    return {panel for panel, condition in EXCUSED_WHILE.items() if not api.query(condition, at)}


async def empty_queries(
    api: PrometheusAPI, models: list[dict[str, Any]], window: Window
) -> list[tuple[PanelQuery, str]]:
    empty = []
    allowed = await asyncio.to_thread(excused, api, window.end)
    for model in models:
        variables = await asyncio.to_thread(
            resolve_variables, api, model, window.time, window.start, window.end
        )
        for query in panel_queries(model):
            if (query.dashboard_uid, query.panel_title) in allowed:
                continue
            panel_window = window.for_panel(query.min_interval)
            expr = substitute(query.expr, variables, panel_window.time)
            result = await asyncio.to_thread(
                api.query_range, expr, panel_window.start, panel_window.end, panel_window.step
            )
            if not has_data(result):
                empty.append((query, expr))
    return empty


async def wait_every_panel_has_data(
    api: PrometheusAPI, models: list[dict[str, Any]], window: Callable[[], Window], timeout: float
) -> None:
    """Wait until every panel query returns data over `window()`; fail listing the panels that do not."""
    last: list[tuple[PanelQuery, str]] = []

    async def all_have_data() -> bool:
        nonlocal last
        last = await empty_queries(api, models, window())
        return not last

    try:
        # cast: mypy cannot pick T in `T | Awaitable[T]` for an async predicate returning bool.
        await wait_for(cast(Any, all_have_data), timeout=timeout, interval=2)
    except ConditionTimeout:
        pytest.fail(
            f"panels without data from {api.base_url}:\n"
            + "\n".join(f"  {q.dashboard_uid} / {q.panel_title} [{q.ref_id}]: {expr}" for q, expr in last)
        )


@pytest.mark.timeout(100)
async def test_every_panel_query_returns_data_and_every_panel_renders(
    simulator_factory, exporter_factory, prometheus_factory, tmp_path: Path
):
    sim = await simulator_factory(markets=3, block_time=0.2, ping_interval=1.0, chain_rpc_port=0)
    # An HA pair: two replicas of one shard, scraped with `replica` a and b, as in production.
    # The simulator's synthetic subaccount (it serves one by default), for the overview's subaccount row.
    subaccount = next(f"{s.address}/{s.number}" for s in sim.source.subaccounts)
    replicas = [
        await exporter_factory(
            sim,
            discovery_interval=1.0,
            subaccounts=(subaccount,),
            chain_rpc_urls=(sim.chain_rpc_url,),  # the chain's head, for the "Who is at fault" panels
            chain_poll_interval=0.5,
            audit_interval=1.0,  # book audits every second, for the drilldown's data-quality row
            candle_resolutions=("1MIN",),  # for the candle-gap panel
        )
        for _ in range(2)
    ]
    job = scrape_config(JOB, [replicas[0].url.removeprefix("http://")], {"shard": "0/1", "replica": "a"})
    job["static_configs"].append(
        {"targets": [replicas[1].url.removeprefix("http://")], "labels": {"shard": "0/1", "replica": "b"}}
    )
    prom = await prometheus_factory(
        scrape_configs=[job],
        rule_files=sorted(RULES_DIR.glob("*.yml")),
        scrape_interval=SCRAPE_INTERVAL,
        evaluation_interval=SCRAPE_INTERVAL,
    )
    started = time.time()
    await prom.wait_targets_up(JOB)
    api = PrometheusAPI(prom.url)
    models = dashboards()
    drilldown = next(m for m in models if m["uid"] == "dydx-market-drilldown")

    def window() -> Window:
        now = time.time()
        return Window(max(started, now - 120), now, SCRAPE_INTERVAL)

    # The market the drilldown opens on (its first, as in Grafana): cross that market's book.
    await wait_for(lambda: prom.query("dydx_market_info"), timeout=15, message="markets listed")
    market = (
        await asyncio.to_thread(resolve_variables, api, drilldown, window().time, started, time.time())
    )["market"]
    assert market
    for fault in (
        {"kind": "error"},
        {"kind": "malformed", "count": 2},
        {"kind": "gap", "count": 2},
        {"kind": "cross", "market": market, "seconds": 3},
    ):
        await control(sim, "POST", "/control/faults", fault)
    # A status change of another market, for the overview's market status panels.
    other = next(t for t in sim.source.tickers() if t != market)
    await control(sim, "POST", "/control/markets", {"market": other, "status": "PAUSED"})

    await wait_every_panel_has_data(api, models, window, timeout=45)

    # Whole events that add up: the crossings of the drilldown's market, one bar a minute from before
    # Prometheus' first sample to now, total what the exporter counted (the panel de-duplicates the HA
    # pair, hence max).
    crossings = next(q for q in panel_queries(drilldown) if q.panel_title == "Crossed periods started")
    assert crossings.min_interval == "1m"
    now = time.time()
    minutes = int((now - started) // 60) + 2
    bars_window = Window(now - 60 * minutes, now, SCRAPE_INTERVAL).for_panel(crossings.min_interval)
    assert bars_window.step == 60
    expr = substitute(
        crossings.expr,
        await asyncio.to_thread(resolve_variables, api, drilldown, bars_window.time, started, now),
        bars_window.time,
    )
    [bars] = await asyncio.to_thread(
        api.query_range, expr, bars_window.start, bars_window.end, bars_window.step
    )
    values = [float(v) for _, v in bars["values"]]
    assert all(v.is_integer() and v >= 0 for v in values), values
    last_bar = float(bars["values"][-1][0])
    counted = await asyncio.to_thread(
        api.query,
        f'max(dydx_orderbook_crossed_total{{market="{market}"}})',
        last_bar,
    )
    assert sum(values) == float(counted[0]["value"][1]) >= 1, (values, counted)

    # HA: a replica pair is counted once where the dashboards de-duplicate, twice where they do not.
    single = await prom.query_value(
        f'sum(dydx_subscriptions{{state="active", instance="{replicas[0].url[7:]}"}})'
    )
    deduped = await prom.query_value(
        'sum(max without (instance, replica) (dydx_subscriptions{state="active"}))'
    )
    assert single and deduped == single
    assert await prom.query_value('sum(dydx_subscriptions{state="active"})') == 2 * single

    # The renderer draws every panel from the same queries.
    out = tmp_path / "render"
    final = window()
    results = []
    for model in models:
        results += await asyncio.to_thread(render_dashboard, api, model, out, final)
    for model in models:
        composite = out / f"{model['uid']}.png"
        assert composite.stat().st_size > 20_000, composite
        panel_files = list((out / model["uid"]).glob("*.png"))
        assert len(panel_files) == sum(1 for p in model["panels"] if p["type"] != "row")
    allowed = await asyncio.to_thread(excused, api, final.end)
    blank = [
        (r.dashboard_uid, r.panel_title, r.errors)
        for r in results
        if not r.series and (r.dashboard_uid, r.panel_title) not in allowed
    ]
    assert blank == []
