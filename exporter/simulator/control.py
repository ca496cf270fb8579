"""The control API under /control/: pause and resume, faults, market listings, status.

JSON in, JSON out. Loopback peers only, unless the server allows remote control. A request that cannot be
applied gets 400 with `{"error": "<what is wrong>"}`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from exporter.simulator import faults as fault_kinds
from exporter.simulator.market import MarketModel

if TYPE_CHECKING:
    from exporter.simulator.server import Simulator

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
    def __init__(self, sim: Simulator, allow_remote: bool) -> None:
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
        return web.json_response(report)
