"""/metrics under load and abuse: concurrent scrapes keep answering without starving the feed; half-sent
requests and clients that never read their response are cut off after the idle and write timeouts, so they
cannot pile up handlers, memory or sockets; oversized request lines and headers are refused; the server
keeps serving through all of it.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from typing import Any

import aiohttp
import pytest

from exporter.protocol import channels as ch
from exporter.web.app import WebServer
from tests.fixtures.simulator import control
from tests.fixtures.support import metrics, truth, wait_ready
from tests.helpers import metric_sum, parse_metrics, wait_for
from tests.reliability.support import ReadinessTrace, resources
from tests.service.test_exporter import histogram_quantile

pytestmark = pytest.mark.timeout(60)

CLIENTS = 20
REQUESTS_PER_CLIENT = 25


@pytest.mark.slow
async def test_concurrent_scrapes_keep_answering_and_the_feed_keeps_up(simulator_factory, exporter_factory):
    sim = await simulator_factory(markets=30, block_time=0.1, rate=3.0, paused=True)
    exp = await exporter_factory(sim, stale_after=5.0)

    async def subscribed() -> bool:
        return metric_sum(await metrics(exp), "dydx_subscriptions", channel=ch.TRADES, state="active") == 30

    await wait_for(subscribed, timeout=20, message="30 trades subscriptions active")
    await control(sim, "POST", "/control/resume")
    await wait_ready(exp)
    before = await metrics(exp)
    latencies: list[float] = []

    async def client(n: int, session: aiohttp.ClientSession) -> None:
        headers = {"Accept-Encoding": "gzip"} if n % 2 else {"Accept": "application/openmetrics-text"}
        for _ in range(REQUESTS_PER_CLIENT):
            began = time.monotonic()
            async with session.get(exp.metrics_url, headers=headers) as resp:
                assert resp.status == 200
                assert len(await resp.read()) > 10_000
            latencies.append(time.monotonic() - began)

    async with ReadinessTrace(exp.url) as trace:
        began = time.monotonic()
        connector = aiohttp.TCPConnector(limit=CLIENTS)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as s:
            await asyncio.gather(*(client(n, s) for n in range(CLIENTS)))
        took = time.monotonic() - began
        assert trace.went_red_since(began) is None, f"readiness dropped under scrape load: {trace.describe()}"
    after = await metrics(exp)
    await control(sim, "POST", "/control/pause")

    assert len(latencies) == CLIENTS * REQUESTS_PER_CLIENT
    scrape_p99 = statistics.quantiles(latencies, n=100)[98]
    assert scrape_p99 < 2.0, f"scrape p99 {scrape_p99:.3f}s, {CLIENTS} concurrent clients, {took:.1f}s in all"
    processed = metric_sum(after, "dydx_updates_total") - metric_sum(before, "dydx_updates_total")
    assert processed > 0, "the feed moved while being scraped"
    for channel in (ch.TRADES, ch.ORDERBOOK):
        p99 = histogram_quantile(0.99, before, after, "dydx_processing_seconds", channel=channel)
        assert p99 < 0.01, f"{channel}: processing p99 {p99 * 1000:.1f} ms under scrape load"
    # Nothing lost while scraped hard: every trade the simulator published reached the counters.
    expected = metric_sum(await truth(sim), "dydx_simulator_trades_published_total")

    async def caught_up() -> bool:
        return metric_sum(await metrics(exp), "dydx_trades_total") == expected

    await wait_for(caught_up, timeout=10, message=f"exporter counted all {expected} trades")


def _raw_connect(port: int, rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def _closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Reads (and discards) until the server closes or resets the connection."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            while await loop.sock_recv(sock, 65536):
                pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


@pytest.mark.slow
async def test_half_requests_and_abandoned_readers_are_cut_off(simulator_factory, exporter_factory):
    """50 connections that send half a request and 50 that ask for /metrics and never read: each holds a
    handler task until the idle (1 s here, 30 s by default) or write timeout closes it; a normal scrape is
    answered meanwhile, and afterwards the server holds nothing for them."""
    sim = await simulator_factory(markets=40, block_time=0.1)
    exp = await exporter_factory(sim)
    await wait_ready(exp)
    server = WebServer(
        "127.0.0.1",
        0,
        "/metrics",
        exp.collector.registry,
        [exp.readiness],
        idle_timeout=1.0,
        write_timeout=1.0,
    )
    await server.start()
    socks: list[socket.socket] = []
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            body_size = len(await resp.read())
        assert body_size > 100_000, "the body must be larger than the socket buffers to block a writer"
        baseline = resources()
        for n in range(100):
            sock = _raw_connect(server.port, rcvbuf=4096)
            full = n % 2 == 1
            sock.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + (b"\r\n" if full else b""))
            socks.append(sock)
        await wait_for(lambda: resources().tasks >= baseline.tasks + 50, timeout=5, message="handlers busy")
        began = time.monotonic()
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            assert resp.status == 200 and len(await resp.read()) > 0
        assert time.monotonic() - began < 1.0, "a normal scrape waits for nobody"
        # The server gives up on every one of them: its tasks are back to the baseline while the clients
        # still hold their sockets open.
        await wait_for(
            lambda: resources().tasks <= baseline.tasks + 2, timeout=5, message="server let go of them"
        )
        closed = await asyncio.gather(*(_closed_by_peer(s, timeout=2) for s in socks))
        assert all(closed), f"{closed.count(False)} connections still open on the server side"
    finally:
        for sock in socks:
            sock.close()
        await server.stop()


async def test_oversized_requests_are_refused_and_the_server_serves_on(simulator_factory, exporter_factory):
    sim = await simulator_factory(markets=2)
    exp = await exporter_factory(sim)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("a 20 KB header", {"headers": {"X-Big": "a" * 20_000}}),
        ("100 headers", {"headers": {f"X-H{i}": "v" for i in range(100)}}),
        ("a 10 KB request line", {"path": "/" + "a" * 10_000}),
    ]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for what, case in cases:
            url = exp.url + case.get("path", "/metrics")
            async with session.get(url, headers=case.get("headers")) as resp:
                assert resp.status in (400, 413, 414, 431), f"{what}: {resp.status}"
        async with session.post(exp.metrics_url, data=b"x" * 1_000_000) as resp:
            assert resp.status in (405, 413), f"a 1 MB POST: {resp.status}"
        async with session.get(exp.metrics_url) as resp:
            assert resp.status == 200
            assert parse_metrics(await resp.text())
