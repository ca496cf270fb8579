"""The exposition of a populated registry: promtool-clean, OpenMetrics-valid, generate_latest-compatible,
and rendered without stalling the event loop."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from exporter.metrics import catalog
from exporter.metrics.looplag import LoopLagProbe
from exporter.protocol import channels as ch
from tests.helpers import find_binary, parse_metrics, wait_for
from tests.state.pipeline_frames import Pipeline, book_snapshot, data, iso, market_object, subscribed, trade


def populated(markets: int = 5) -> Pipeline:
    pipe = Pipeline()
    pipe.connect()
    tickers = [f"M{i}-USD" for i in range(markets)]
    pipe.universe.load({t: market_object(t, clob=i) for i, t in enumerate(tickers)})
    now = time.time()
    for t in tickers:
        pipe.feed(
            subscribed(ch.ORDERBOOK, t, pipe.mid(), book_snapshot([("99", "1"), ("98", "2")], [("101", "1")]))
        )
        pipe.feed(subscribed(ch.TRADES, t, pipe.mid(), {"trades": []}))
        pipe.feed(data(ch.TRADES, t, pipe.mid(), {"trades": [trade(f"{pipe.next_id:024x}", at=now - 0.3)]}))
        pipe.feed(data(ch.ORDERBOOK, t, pipe.mid(), {"bids": [["102", "1"]]}))  # crossed
    pipe.feed(data(ch.BLOCK_HEIGHT, ch.BLOCK_HEIGHT_ID, pipe.mid(), {"blockHeight": "7", "time": iso(now)}))
    pipe.feed(b"not json")
    c = pipe.collector
    c.link_up("conn-0", True)
    c.link_disconnected("conn-0", 1012)
    c.reconnected()
    c.connection_failed("refused")
    c.ping_rtt(0.012)
    c.subscriptions({(ch.TRADES, "active"): 5, (ch.ORDERBOOK, "pending"): 1})
    c.subscription_failed(ch.TRADES, "invalid_subscription_id")
    c.component_up("websocket", True)
    c.rest_request("/v4/perpetualMarkets", "200", 0.05)
    c.server_error("other")
    return pipe


def test_promtool_check_metrics_is_clean(tmp_path) -> None:
    promtool = find_binary("promtool")
    body = populated().collector.registry.render()
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.strip() == b"" and result.stderr.strip() == b"", result.stderr.decode()


def test_every_catalog_family_is_rendered_with_help_and_type() -> None:
    text = populated().collector.registry.render().decode()
    for spec in catalog.CATALOG:
        assert f"# HELP {spec.name} " in text
        kind = "gauge" if spec.kind == "info" else spec.kind
        assert f"# TYPE {spec.name} {kind}\n" in text
    assert "process_resident_memory_bytes" in text


def test_openmetrics_render_parses_and_ends_with_eof() -> None:
    body = populated().collector.registry.render(openmetrics=True).decode()
    assert body.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(body)}  # type: ignore[no-untyped-call]
    assert families["dydx_trades"].type == "counter"
    assert families["dydx_exporter_build"].type == "info"
    assert families["dydx_feed_latency_seconds"].type == "histogram"
    trades = [s for s in families["dydx_trades"].samples if s.name == "dydx_trades_total"]
    assert sum(s.value for s in trades) == 5


def test_generate_latest_on_the_registry_matches_the_fast_render() -> None:
    pipe = populated()
    fast = parse_metrics(pipe.collector.registry.render().decode())
    compat = parse_metrics(generate_latest(pipe.collector.registry).decode())
    dydx = {
        k: v
        for k, v in fast.items()
        if k[0].startswith("dydx_") and "scrape" not in k[0] and "seconds_total" not in k[0]
    }
    assert dydx and all(compat[k] == pytest.approx(v) for k, v in dydx.items())


async def test_scrape_of_267_markets_never_holds_the_loop_long() -> None:
    pipe = populated(267)
    stalls: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            stalls.append(now - last)
            last = now

    task = asyncio.create_task(heartbeat())
    try:
        await asyncio.sleep(0)
        body = await pipe.collector.registry.render_async()
    finally:
        done.set()
        await task
    samples = parse_metrics(body.decode())
    assert sum(1 for k in samples if k[0] == "dydx_orderbook_crossed") == 267
    # Generous against a shared 2-core machine; typically ~1 ms.
    assert max(stalls) < 0.025
    assert len(stalls) >= 2  # the render yielded at least once


@pytest.mark.timeout(10)
async def test_loop_lag_probe_sees_a_blocked_loop() -> None:
    pipe = Pipeline()
    probe = LoopLagProbe(pipe.collector, interval=0.01)
    await probe.start()
    try:
        await wait_for(lambda: pipe.collector.loop_lag.count >= 2, timeout=5)
        held_until = time.perf_counter() + 0.06
        while time.perf_counter() < held_until:  # hold the loop, as a slow handler would
            pass
        await wait_for(lambda: pipe.collector.loop_lag.sum >= 0.05, timeout=5)
    finally:
        await probe.stop()
    s = parse_metrics(pipe.collector.render_text())
    assert (s[("dydx_exporter_event_loop_lag_seconds_bucket", (("le", "+Inf"),))]) >= 3
    assert (
        s[("dydx_exporter_event_loop_lag_seconds_bucket", (("le", "0.025"),))]
        < s[("dydx_exporter_event_loop_lag_seconds_bucket", (("le", "+Inf"),))]
    )
