"""Why REST discovery failed, as the log says it: a sentence a person reads, never a Python repr.

The process test runs the exporter as users start it (`python -m exporter` with flags) against a REST
port nobody listens on; the others serve each kind of bad answer from a real aiohttp server on loopback
and read the sentence `Discovery.fetch_markets` gives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from exporter.config import Settings
from exporter.feed.discovery import Discovery, RestFailed
from exporter.feed.http import HoldOff
from exporter.feed.pool import Pool
from exporter.metrics.collector import Collector
from exporter.state.router import Router
from exporter.state.universe import MarketUniverse
from tests.fixtures.exporter import start_exporter_process
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(30)


async def test_refused_rest_is_logged_like_the_websocket(simulator_factory):
    sim = await simulator_factory(markets=2)
    port = free_port()  # nothing listens here
    exporter = await start_exporter_process(sim, f"--dydx.rest-url=http://127.0.0.1:{port}")
    try:
        event = await exporter.wait_event("rest_discovery_failed")
    finally:
        await exporter.stop()
    error = event["error"]
    assert error.startswith(f"Cannot connect to host 127.0.0.1:{port}"), error
    assert "Error(" not in error and "\n" not in error
    assert event["code"] == "connection_error"
    assert event["url"] == f"http://127.0.0.1:{port}/v4/perpetualMarkets"


@pytest.fixture
async def bad_rest() -> AsyncIterator[str]:
    """A REST server on loopback answering each route with one kind of failure."""

    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503, text="upstream\n  maintenance " + "x" * 400)

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="<html>not json</html>")

    async def wrong_shape(request: web.Request) -> web.Response:
        return web.json_response({"markets": [1, 2]})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({"markets": {}})

    app = web.Application()
    for name, handler in (("unavailable", unavailable), ("garbage", garbage), ("shape", wrong_shape),
                          ("slow", slow)):  # fmt: skip
        app.router.add_get(f"/{name}/v4/perpetualMarkets", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("route", "code", "sentence"),
    [
        ("unavailable", "503", "HTTP 503 Service Unavailable: upstream maintenance xxx"),
        ("garbage", "invalid_body", "the answer is not a market list (unexpected character"),
        ("shape", "invalid_body", "the answer is not a market list (markets is not a mapping of objects)"),
        ("slow", "timeout", "no answer within 0.3s"),
    ],
)
async def test_bad_answers_read_as_sentences(bad_rest, route, code, sentence):
    settings = Settings.for_simulator(_Urls(f"{bad_rest}/{route}"), discovery_timeout=0.3)
    collector = Collector(version="test", channels=settings.channels)
    universe = MarketUniverse()
    async with aiohttp.ClientSession() as session:
        pool = Pool(settings, session, Router(collector, universe), collector, universe)
        discovery = Discovery(settings, session, universe, collector, pool, HoldOff())
        with pytest.raises(RestFailed) as failed:
            await discovery.fetch_markets()
    assert failed.value.code == code
    detail = failed.value.detail
    assert detail.startswith(sentence), detail
    assert len(detail) <= 300 and "\n" not in detail and "Error(" not in detail


class _Urls:
    def __init__(self, base: str) -> None:
        self.base_url = base
        self.ws_url = "ws://127.0.0.1:1/v4/ws"
