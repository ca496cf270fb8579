"""The control API under /control/: pause and resume, faults, market listings, status.

JSON in, JSON out. Loopback peers only, unless the server allows remote control. A request that cannot be
applied gets 400 with `{"error": "<what is wrong>"}`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from exporter.simulator import faults as fault_kinds

if TYPE_CHECKING:
    from exporter.simulator.server import Simulator

LOOPBACK_PREFIXES = ("127.", "::1", "::ffff:127.")


def bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


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
        try:
            body = await self._json(request)
        except ValueError as exc:
            return bad_request(str(exc))
        if not isinstance(body, dict) or len({"list", "delist"} & set(body)) != 1:
            return bad_request(
                'body must be {"list": "NEW-USD"} (optionally with "price") or {"delist": "X-USD"}'
            )
        unknown = set(body) - {"list", "delist", "price"}
        if unknown:
            return bad_request(f"unknown field(s): {', '.join(sorted(unknown))}")
        ticker = body.get("list") or body.get("delist")
        if not isinstance(ticker, str):
            return bad_request(f"the ticker must be a string, not {ticker!r}")
        price = body.get("price")
        if price is not None and (
            isinstance(price, bool) or not isinstance(price, int | float) or price <= 0
        ):
            return bad_request(f"price must be a positive number, not {price!r}")
        source = self._sim.source
        if "list" in body:
            try:
                market = source.list_market(ticker, float(price) if price is not None else None)
            except ValueError as exc:
                return bad_request(str(exc))
            return web.json_response({"listed": ticker, "market": market})
        try:
            source.delist_market(ticker)
        except KeyError:
            return bad_request(f"market {ticker} is not listed")
        return web.json_response({"delisted": ticker})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self._sim.status())
