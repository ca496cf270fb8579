"""The WebServer over real HTTP on loopback: content negotiation, gzip, health, readiness, limits."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from exporter.web.app import WebServer, accepts_gzip, wants_openmetrics
from tests.helpers import metric_value, parse_metrics
from tests.state.pipeline_frames import Pipeline

pytestmark = pytest.mark.timeout(30)


class Readiness:
    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons

    def not_ready_reasons(self, now: float) -> list[str]:
        return list(self.reasons)


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Readiness, Readiness]]:
    pipe = Pipeline()
    feed, other = Readiness([]), Readiness([])
    server = WebServer("127.0.0.1", 0, "/custom-metrics", pipe.collector.registry, [feed, other])
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", feed, other
    finally:
        await server.stop()


async def test_metrics_text_openmetrics_and_gzip(served) -> None:
    url, _, _ = served
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(url + "/custom-metrics", headers={"Accept-Encoding": "identity"}) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert "Content-Encoding" not in resp.headers
            samples = parse_metrics(await resp.text())
            assert metric_value(samples, "dydx_exporter_build_info", version="1.2.3-test") == 1
        accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1"
        async with session.get(
            url + "/custom-metrics", headers={"Accept": accept, "Accept-Encoding": "gzip"}
        ) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
            assert resp.headers["Content-Encoding"] == "gzip"
            body = gzip.decompress(await resp.read()).decode()
            assert body.endswith("# EOF\n")
            families = list(parse_openmetrics(body))  # type: ignore[no-untyped-call]
            assert any(f.name == "dydx_ws_messages" for f in families)


async def test_healthz_landing_and_unknown_path(served) -> None:
    url, _, _ = served
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/healthz") as resp:
            assert resp.status == 200 and (await resp.text()).strip() == "ok"
        async with session.get(url + "/") as resp:
            page = await resp.text()
            assert resp.status == 200 and 'href="/custom-metrics"' in page and 'href="/readyz"' in page
        async with session.get(url + "/metrics") as resp:
            assert resp.status == 404


async def test_readyz_lists_reasons_from_every_source(served) -> None:
    url, feed, other = served
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/readyz") as resp:
            assert resp.status == 200
        feed.reasons = ["feed: no connected link"]
        other.reasons = ["processor: no data frame for 31.0s (stale after 30s)"]
        async with session.get(url + "/readyz") as resp:
            assert resp.status == 503
            body = await resp.text()
            assert "no connected link" in body and "stale after 30s" in body
        feed.reasons, other.reasons = [], []
        async with session.get(url + "/readyz") as resp:
            assert resp.status == 200


async def test_oversized_headers_are_refused(served) -> None:
    url, _, _ = served
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + "/healthz", headers={"X-Big": "a" * 20000}) as resp,
    ):
        assert resp.status in (400, 431)


async def test_middlewares_wrap_every_route() -> None:
    seen: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler):
        seen.append(request.path)
        return await handler(request)

    server = WebServer("127.0.0.1", 0, "/metrics", Pipeline().collector.registry, [], middlewares=[record])
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/metrics", "/healthz", "/readyz", "/"):
                async with session.get(f"http://127.0.0.1:{server.port}{path}") as resp:
                    assert resp.status == 200
    finally:
        await server.stop()
    assert seen == ["/metrics", "/healthz", "/readyz", "/"]


def test_header_parsing() -> None:
    assert wants_openmetrics("application/openmetrics-text; version=1.0.0")
    assert not wants_openmetrics("text/plain;version=0.0.4")
    assert accepts_gzip("gzip, deflate")
    assert not accepts_gzip("gzip;q=0, identity")
    assert not accepts_gzip("")
