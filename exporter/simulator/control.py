"""The control API under /control/: pause and resume, faults, market listings, status, ground truth, and
the indexes (`/control/` as JSON, `/` as a short HTML page) listing every endpoint and fault kind.

JSON in, JSON out. Loopback peers only, unless the server allows remote control. A request that cannot be
applied gets 400 with `{"error": "<what is wrong>"}`. It drives the simulator through `Controlled`, so it
does not import the server (which imports it).
"""

from __future__ import annotations

import html
from typing import Any, Protocol

import orjson
from aiohttp import web

from exporter.simulator import faults as fault_kinds
from exporter.simulator.faults import FaultKind
from exporter.simulator.faults.base import FaultTarget
from exporter.simulator.faults.quality import ghosts
from exporter.simulator.market import MarketModel


class _Faults(Protocol):
    def describe(self) -> list[dict[str, Any]]: ...


class Controlled(FaultTarget, Protocol):
    """What the control API needs of the simulator: what faults act on (source, hub, chain, ...), and more."""

    @property
    def faults(self) -> _Faults: ...

    @property
    def paused(self) -> bool: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def apply_fault(self, kind: FaultKind[Any], params: Any) -> dict[str, Any]: ...

    def clear_faults(self) -> int: ...

    def hide_from_ws(self, ticker: str, seconds: float) -> None: ...


#: What each endpoint is for, as the indexes show it (the endpoints themselves come from the router).
ENDPOINT_HELP = {
    "/": "this page",
    "/v4/ws": "the WebSocket feed (the indexer protocol)",
    "/v4/perpetualMarkets": "REST: markets (?ticker=, ?limit=)",
    "/v4/orderbooks/perpetualMarket/{ticker}": "REST: a market's order book (uncrossed, as comlink)",
    "/v4/trades/perpetualMarket/{ticker}": "REST: a market's trades, newest first",
    "/v4/candles/perpetualMarkets/{ticker}": "REST: a market's candles (?resolution=)",
    "/v4/height": "REST: the latest block height",
    "/v4/time": "REST: the server time",
    "/metrics": "ground truth counters: what the simulator published (Prometheus text format)",
    "/control/": "this index as JSON: endpoints and fault kinds with their parameters",
    "/control/pause": "stop market events (connections and pings stay up)",
    "/control/resume": "restart market events",
    "/control/faults": 'GET lists the faults in force, POST {"kind": ...} injects one, DELETE clears all',
    "/control/markets": 'POST {"list": T}, {"delist": T} or {"market": T, "status": S}',
    "/control/status": "paused or not, height, markets, connections (compressed ones too), faults in force",
    "/control/truth": "what a perfect consumer holds now (?market=T narrows it)",
}

MARKETS_USAGE = (
    'body must be {"list": "NEW-USD"} (optional "price", "ws_delay" seconds), {"delist": "X-USD"} '
    'or {"market": "X-USD", "status": "PAUSED"}'
)
LOOPBACK_PREFIXES = ("127.", "::1", "::ffff:127.")


def bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def _positive_number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{name} must be a positive number, not {value!r}")
    return float(value)


def is_loopback(remote: str | None) -> bool:
    return remote is not None and remote.startswith(LOOPBACK_PREFIXES)


class ControlApi:
    def __init__(self, sim: Controlled, allow_remote: bool) -> None:
        self._sim = sim
        self._allow_remote = allow_remote

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/control/pause", self.pause),
            web.post("/control/resume", self.resume),
            web.get("/control/faults", self.list_faults),
            web.post("/control/faults", self.add_fault),
            web.delete("/control/faults", self.clear_faults),
            web.post("/control/markets", self.markets),
            web.get("/control/status", self.status),
            web.get("/control/truth", self.truth),
            web.get("/control/", self.index),
            web.get("/", self.landing_page),
        ]

    @web.middleware
    async def guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if (
            request.path.startswith("/control/")
            and not self._allow_remote
            and not is_loopback(request.remote)
        ):
            message = "the control API only answers loopback clients (start with --control.allow-remote)"
            return web.json_response({"error": message}, status=403)
        response: web.StreamResponse = await handler(request)
        return response

    async def _json(self, request: web.Request) -> object:
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"body is not valid JSON: {exc}") from None

    async def pause(self, request: web.Request) -> web.Response:
        self._sim.pause()
        return web.json_response(self._sim.status())

    async def resume(self, request: web.Request) -> web.Response:
        self._sim.resume()
        return web.json_response(self._sim.status())

    async def list_faults(self, request: web.Request) -> web.Response:
        return web.json_response({"faults": self._sim.faults.describe()})

    async def add_fault(self, request: web.Request) -> web.Response:
        try:
            body = await self._json(request)
            kind, params = fault_kinds.parse(body)
            result = self._sim.apply_fault(kind, params)
        except ValueError as exc:
            return bad_request(str(exc))
        return web.json_response(result)

    async def clear_faults(self, request: web.Request) -> web.Response:
        cleared = self._sim.clear_faults()
        return web.json_response({"cleared": cleared})

    async def markets(self, request: web.Request) -> web.Response:
        """{"list": T, "price"?: p, "ws_delay"?: s} | {"delist": T} | {"market": T, "status": S}."""
        try:
            body = await self._json(request)
            if not isinstance(body, dict):
                raise ValueError(MARKETS_USAGE)
            return web.json_response(self._change_market(body))
        except ValueError as exc:
            return bad_request(str(exc))

    def _change_market(self, body: dict[str, Any]) -> dict[str, Any]:
        actions = {"list", "delist", "status"} & set(body)
        if len(actions) != 1:
            raise ValueError(MARKETS_USAGE)
        (action,) = actions
        allowed = {
            "list": {"list", "price", "ws_delay"},
            "delist": {"delist"},
            "status": {"status", "market"},
        }
        unknown = set(body) - allowed[action]
        if unknown:
            raise ValueError(f"unknown field(s) for {action}: {', '.join(sorted(unknown))}")
        ticker = body.get("market") if action == "status" else body[action]
        if not isinstance(ticker, str):
            raise ValueError(f"the ticker must be a string, not {ticker!r}")
        source = self._sim.source
        if action == "list":
            price = _positive_number(body, "price")
            ws_delay = _positive_number(body, "ws_delay")
            market = source.list_market(ticker, price)
            if ws_delay:
                self._sim.hide_from_ws(ticker, ws_delay)
            return {"listed": ticker, "market": market}
        if ticker not in source.tickers():
            raise ValueError(f"market {ticker} is not listed")
        if action == "delist":
            source.delist_market(ticker)
            return {"delisted": ticker}
        if not isinstance(source, MarketModel):
            raise ValueError("status changes need the synthetic market (not a replay)")
        source.set_status(ticker, str(body["status"]))
        return {"market": ticker, "status": body["status"]}

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self._sim.status())

    async def truth(self, request: web.Request) -> web.Response:
        """What a perfect consumer holds now (truth.Ledger); `?market=T` (repeatable) narrows the markets."""
        source = self._sim.source
        listed = source.tickers()
        wanted = request.query.getall("market", [])
        unknown = sorted(set(wanted) - set(listed))
        if unknown:
            return bad_request(f"market(s) not listed: {', '.join(unknown)}")
        tickers = [t for t in listed if t in wanted] if wanted else listed
        report = self._sim.hub.ledger.report(tickers, source.rest_orderbook, self._sim.paused)
        # What the chain, the indexer, REST and each connection really are (who is at fault).
        report["chain"] = self._sim.chain.truth()
        # Levels the stream carries that the indexer's book does not have (fault ghost_level).
        report["ghost_levels"] = ghosts(self._sim)
        return web.json_response(report)

    def _index(self, request: web.Request) -> dict[str, Any]:
        endpoints: dict[str, list[str]] = {}
        for route in request.app.router.routes():
            if route.method != "HEAD" and route.resource is not None:
                endpoints.setdefault(route.resource.canonical, []).append(route.method)
        return {
            "endpoints": [
                {"path": path, "methods": methods, "help": ENDPOINT_HELP.get(path, "")}
                for path, methods in endpoints.items()
            ],
            "fault_kinds": [kind.describe() for kind in fault_kinds.KINDS.values()],
        }

    async def index(self, request: web.Request) -> web.Response:
        """`GET /control/`: every endpoint and every fault kind with its parameters."""
        return web.json_response(self._index(request))

    async def landing_page(self, request: web.Request) -> web.Response:
        """`GET /`: the same index as a short page for a browser."""
        index = self._index(request)
        e = html.escape
        rows = "".join(
            f"<li><code>{e(' '.join(ep['methods']))} "
            + (
                f'<a href="{e(ep["path"])}">{e(ep["path"])}</a>'
                if "GET" in ep["methods"] and "{" not in ep["path"]
                else e(ep["path"])
            )
            + f"</code> {e(ep['help'])}</li>"
            for ep in index["endpoints"]
        )
        kinds = "".join(
            f"<li><code>{e(k['kind'])}</code> {e(k['help'])}"
            + "".join(
                f"<br><code>{e(name)}</code> ({e(p['type'])}"
                + (
                    ", required"
                    if p.get("required")
                    else f", default {e(orjson.dumps(p['default']).decode())}"
                )
                + f") {e(p['help'])}"
                for name, p in k["params"].items()
            )
            + "</li>"
            for k in index["fault_kinds"]
        )
        page = (
            "<!doctype html><html><head><meta charset=utf-8><title>dYdX v4 indexer simulator</title></head>"
            "<body><h1>dYdX v4 indexer simulator</h1>"
            f"<p>WebSocket: <code>ws://{e(request.host)}/v4/ws</code>. Control API (loopback clients only "
            "unless <code>--control.allow-remote</code>): JSON in and out.</p>"
            f"<h2>Endpoints</h2><ul>{rows}</ul>"
            '<h2>Fault kinds</h2><p><code>POST /control/faults</code> with <code>{"kind": ..., ...}</code>:'
            f"</p><ul>{kinds}</ul></body></html>"
        )
        return web.Response(text=page, content_type="text/html")
