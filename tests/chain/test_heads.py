"""The pollers of the chain's and REST's heads (exporter.feed.heads) against the simulator's real CometBFT
RPC on loopback (and a tiny aiohttp server for the failure shapes). About a second in all."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from exporter.feed.heads import (
    ChainNetworkMismatch,
    Heads,
    HeadsSettings,
    parse_height,
    parse_status,
    rpc_names,
)
from exporter.feed.http import HoldOff, HttpFailed
from exporter.simulator.chain import TESTNET, Chain, ChainRpc
from exporter.simulator.market import MarketConfig, MarketModel
from tests.helpers import wait_for


class Observed:
    """A HeadsObserver that remembers everything."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.heads: dict[str, tuple[int, float, bool]] = {}
        self.up: dict[str, bool] = {}
        self.rest: list[tuple[int, float]] = []
        self.rest_requests: list[tuple[str, str]] = []

    def chain_rpc_request(self, rpc: str, code: str, seconds: float) -> None:
        assert seconds >= 0
        self.requests.append((rpc, code))

    def chain_rpc_head(self, rpc: str, height: int, block_time: float, catching_up: bool) -> None:
        self.heads[rpc] = (height, block_time, catching_up)

    def chain_rpc_up(self, rpc: str, up: bool) -> None:
        self.up[rpc] = up

    def rest_request(self, endpoint: str, code: str, seconds: float) -> None:
        self.rest_requests.append((endpoint, code))

    def rest_head(self, height: int, block_time: float) -> None:
        self.rest.append((height, block_time))


class Node:
    """A chain (a synthetic market advanced by hand) and its RPC."""

    def __init__(self, network: str = "dydx-mainnet-1") -> None:
        self.chain = Chain(_Null(), network, 0.05)
        market = MarketModel(MarketConfig(markets=1, block_time=0.05), self.chain.feed)
        self.source = self.chain.attach(market)
        self.rpc = ChainRpc(self.chain, "127.0.0.1", 0)

    def block(self) -> None:
        for _ in range(round(0.05 / self.source.tick_interval)):
            self.source.advance(time.time())


class _Null:
    def publish(self, channel: str, key: str | None, contents: Any, extra: bytes = b"") -> None:
        pass


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    n = Node()
    await n.rpc.start()
    try:
        yield n
    finally:
        await n.rpc.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def settings(*urls: str, rest_url: str = "http://127.0.0.1:1", rest_interval: float = 0.0) -> HeadsSettings:
    return HeadsSettings(
        chain_rpc_urls=urls,
        network="mainnet",
        rest_url=rest_url,
        chain_poll_interval=0.05,
        rest_height_interval=rest_interval,
        timeout=1.0,
        backoff_initial=0.05,
        backoff_max=0.2,
    )


def test_rpc_names_are_hosts_without_credentials_path_or_query() -> None:
    assert rpc_names(["https://user:secret@rpc.example.com:443/path?token=x"]) == ["rpc.example.com"]
    assert rpc_names(["http://a.example:26657", "http://a.example:36657", "http://b.example"]) == [
        "a.example:26657",
        "a.example:36657",
        "b.example",
    ]
    assert rpc_names(["http://a.example/x", "http://a.example/y"]) == ["a.example-1", "a.example-2"]
    assert all(len(n) <= 48 for n in rpc_names(["http://" + "h" * 200 + ".example"]))


def test_parse_rejects_what_is_not_the_shape() -> None:
    bodies: list[Any] = [{}, {"result": {"sync_info": {}}}, [], {"result": {"node_info": {"network": 1}}}]
    for body in bodies:
        with pytest.raises(HttpFailed) as failed:
            parse_status(body)
        assert failed.value.code == "invalid_body"
    with pytest.raises(HttpFailed):
        parse_height({"height": "x", "time": "2026-01-01T00:00:00.000Z"})
    assert parse_height({"height": "12", "time": "1970-01-01T00:00:01.500Z"}) == (12, 1.5)


async def test_a_node_is_polled_and_its_head_follows_the_chain(
    node: Node, session: aiohttp.ClientSession
) -> None:
    seen = Observed()
    heads = Heads(settings(node.rpc.url), session, seen, seen.rest_request, HoldOff())
    await heads.start()
    try:
        name = "127.0.0.1"
        await wait_for(lambda: seen.up.get(name) is True, timeout=5)
        node.block()
        node.block()
        target = node.chain.chain_head()

        def caught_up() -> bool:
            return seen.heads.get(name, (0, 0.0, True))[0] == target[0]

        await wait_for(caught_up, timeout=5)
        assert seen.heads[name][1] == pytest.approx(target[1], abs=1e-6)
        node.chain.start_catching_up()
        await wait_for(lambda: seen.heads[name][2] is True, timeout=5)
        node.chain.rpc_down = True
        await wait_for(lambda: seen.up[name] is False, timeout=5)
        assert (name, "connection_error") in seen.requests
        node.chain.rpc_down = False
        await wait_for(lambda: seen.up[name] is True, timeout=5)
        assert seen.requests.count((name, "200")) >= 3
    finally:
        await heads.stop()


async def test_a_node_on_another_network_is_an_error_at_start(session: aiohttp.ClientSession) -> None:
    other = Node(TESTNET)
    await other.rpc.start()
    try:
        heads = Heads(settings(other.rpc.url), session, Observed(), Observed().rest_request, HoldOff())
        with pytest.raises(ChainNetworkMismatch, match=r"dydx-testnet-4.*dydx-mainnet-1"):
            await heads.start()
        await heads.stop()
    finally:
        await other.rpc.stop()


async def test_an_unreachable_node_at_start_is_only_down(session: aiohttp.ClientSession) -> None:
    seen = Observed()
    heads = Heads(settings("http://127.0.0.1:1"), session, seen, seen.rest_request, HoldOff())
    await heads.start()
    try:
        assert seen.up == {"127.0.0.1": False}
        await wait_for(lambda: len(seen.requests) >= 2, timeout=5)
        assert {code for _, code in seen.requests} == {"connection_error"}
    finally:
        await heads.stop()


async def test_a_network_change_later_is_down_with_the_reason_logged(
    node: Node, session: aiohttp.ClientSession, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = Observed()
    heads = Heads(settings(node.rpc.url), session, seen, seen.rest_request, HoldOff())
    await heads.start()
    try:
        await wait_for(lambda: seen.up.get("127.0.0.1") is True, timeout=5)
        node.chain.network = TESTNET
        await wait_for(lambda: seen.up["127.0.0.1"] is False, timeout=5)
        node.chain.network = "dydx-mainnet-1"
        await wait_for(lambda: seen.up["127.0.0.1"] is True, timeout=5)
    finally:
        await heads.stop()
    logged = capsys.readouterr()
    assert "chain_rpc_wrong_network" in logged.out + logged.err


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[str, list[float]]]:
    """A /status that answers 429 (Retry-After 1 s) once, then a good status; and /v4/height."""
    calls: list[float] = []

    async def status(request: web.Request) -> web.Response:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "1"})
        body = {
            "jsonrpc": "2.0",
            "id": -1,
            "result": {
                "node_info": {"network": "dydx-mainnet-1"},
                "sync_info": {
                    "latest_block_height": "7",
                    "latest_block_time": "2026-12-03T10:00:00.123456789Z",
                    "catching_up": False,
                },
            },
        }
        return web.json_response(body)

    async def height(request: web.Request) -> web.Response:
        return web.json_response({"height": "41", "time": "2026-12-03T10:00:00.500Z"})

    app = web.Application()
    app.router.add_get("/status", status)
    app.router.add_get("/v4/height", height)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", calls
    finally:
        await runner.cleanup()


async def test_429_retry_after_is_honoured_and_rest_height_is_polled(
    flaky: tuple[str, list[float]], session: aiohttp.ClientSession
) -> None:
    url, calls = flaky
    seen = Observed()
    heads = Heads(
        settings(url, rest_url=url, rest_interval=0.05), session, seen, seen.rest_request, HoldOff()
    )
    await heads.start()  # the start check gets the 429: not a mismatch, only down
    try:
        await wait_for(lambda: seen.up.get("127.0.0.1") is True, timeout=5)
        assert calls[1] - calls[0] >= 0.95  # Retry-After in seconds, not milliseconds
        assert seen.heads["127.0.0.1"][0] == 7
        await wait_for(lambda: len(seen.rest) >= 2, timeout=5)
        assert seen.rest[-1][0] == 41
        assert ("/v4/height", "200") in seen.rest_requests
        assert ("127.0.0.1", "429") in seen.requests
    finally:
        await heads.stop()
