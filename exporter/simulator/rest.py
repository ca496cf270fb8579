"""The comlink REST subset under /v4/, with the reference's shapes, limits and error bodies."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from exporter.protocol import channels as ch
from exporter.simulator import formats
from exporter.simulator.source import EventSource

SourceGetter = Callable[[], EventSource]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Compact JSON, as Express's res.json writes it."""
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def errors(status: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    """comlink's error body: {"errors":[{"msg":"..."}]}."""
    return json_response({"errors": [{"msg": msg}]}, status, headers)


def _query_error(param: str, value: str, msg: str) -> web.Response:
    """An express-validator style 400."""
    return json_response({"errors": [{"value": value, "msg": msg, "param": param, "location": "query"}]}, 400)


class QueryError(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return ch.REST_DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= ch.REST_MAX_LIMIT:
        raise QueryError(
            _query_error(
                "limit",
                raw,
                f"limit must be a positive integer that is not greater than max: {ch.REST_MAX_LIMIT}",
            )
        )
    return int(raw)


def _int_param(request: web.Request, name: str, minimum: int = 0) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < minimum:
        raise QueryError(_query_error(name, raw, f"{name} must be a non-negative integer"))
    return int(raw)


def _iso_param(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return formats.parse_iso(raw)
    except ValueError:
        raise QueryError(_query_error(name, raw, f"{name} must be a valid ISO string")) from None


def _not_found(ticker: str) -> web.Response:
    return errors(404, f"{ticker} not found in markets of type PERPETUAL")


class RateLimiter:
    """comlink's limiter: `points` requests per `window` seconds per client IP, in fixed windows.

    Headers as comlink sends them: RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset (epoch ms) and, on
    a 429, Retry-After in milliseconds.
    """

    def __init__(self, points: int, window: float = ch.REST_RATE_LIMIT_WINDOW_S) -> None:
        self.points = points
        self.window = window
        self._windows: dict[str, tuple[float, int]] = {}

    def check(self, client: str, now: float) -> tuple[bool, dict[str, str]]:
        start, used = self._windows.get(client, (now, 0))
        if now - start >= self.window:
            start, used = now, 0
        used += 1
        self._windows[client] = (start, used)
        if len(self._windows) > 10_000:  # forget idle clients so the table stays bounded
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < self.window}
        reset_at = start + self.window
        headers = {
            "RateLimit-Limit": str(self.points),
            "RateLimit-Remaining": str(max(0, self.points - used)),
            "RateLimit-Reset": str(int(reset_at * 1000)),
        }
        if used > self.points:
            headers["Retry-After"] = str(max(1, int((reset_at - now) * 1000)))
            return False, headers
        return True, headers


class RestApi:
    def __init__(self, source: SourceGetter) -> None:
        self._source = source

    def routes(self) -> list[web.RouteDef]:
        """The subset of comlink served: read-only, every endpoint a GET."""
        handlers = {
            "/v4/perpetualMarkets": self.perpetual_markets,
            "/v4/orderbooks/perpetualMarket/{ticker}": self.orderbook,
            "/v4/trades/perpetualMarket/{ticker}": self.trades,
            "/v4/candles/perpetualMarkets/{ticker}": self.candles,
            "/v4/height": self.height,
            "/v4/time": self.time,
        }
        return [web.get(path, handler) for path, handler in handlers.items()]

    async def perpetual_markets(self, request: web.Request) -> web.Response:
        try:
            limit = _limit(request)
        except QueryError as exc:
            return exc.response
        ticker = request.query.get("ticker") or request.query.get("market")
        body = self._source().rest_markets(ticker, limit)
        if body is None:
            return _not_found(ticker or "")
        return json_response(body)

    async def orderbook(self, request: web.Request) -> web.Response:
        ticker = request.match_info["ticker"]
        body = self._source().rest_orderbook(ticker)
        if body is None:
            return _not_found(ticker)
        return json_response(body)

    async def trades(self, request: web.Request) -> web.Response:
        ticker = request.match_info["ticker"]
        try:
            limit = _limit(request)
            before_height = _int_param(request, "createdBeforeOrAtHeight")
            before = _iso_param(request, "createdBeforeOrAt")
            page = _int_param(request, "page", minimum=1)
        except QueryError as exc:
            return exc.response
        rows = self._source().rest_trades(ticker)
        if rows is None:
            return _not_found(ticker)
        if before_height is not None:
            rows = [r for r in rows if int(r["createdAtHeight"]) <= before_height]
        if before is not None:
            rows = [r for r in rows if formats.parse_iso(r["createdAt"]) <= before]
        if page is None:
            return json_response({"trades": rows[:limit]})
        offset = (page - 1) * limit
        return json_response(
            {
                "trades": rows[offset : offset + limit],
                "pageSize": limit,
                "totalResults": len(rows),
                "offset": offset,
            },
        )

    async def candles(self, request: web.Request) -> web.Response:
        ticker = request.match_info["ticker"]
        resolution = request.query.get("resolution", "")
        if resolution not in ch.CANDLE_RESOLUTION_SECONDS:
            return _query_error(
                "resolution",
                resolution,
                f"resolution must be a valid Candle Resolution, one of {','.join(ch.CANDLE_RESOLUTIONS)}",
            )
        try:
            limit = _limit(request)
            from_iso = _iso_param(request, "fromISO")
            to_iso = _iso_param(request, "toISO")
        except QueryError as exc:
            return exc.response
        rows = self._source().rest_candles(ticker, resolution)
        if rows is None:
            return _not_found(ticker)
        if from_iso is not None or to_iso is not None:
            low = from_iso if from_iso is not None else float("-inf")
            high = to_iso if to_iso is not None else float("inf")
            rows = [r for r in rows if low <= formats.parse_iso(r["startedAt"]) <= high]
        return json_response({"candles": rows[:limit]})

    async def height(self, request: web.Request) -> web.Response:
        height, at = self._source().height()
        return json_response({"height": str(height), "time": formats.iso_ms(at)})

    async def time(self, request: web.Request) -> web.Response:
        now = time.time()
        return json_response({"iso": formats.iso_ms(now), "epoch": round(now, 3)})
