"""One JSON GET against an HTTP API of the feed's sources (the indexer's REST, a CometBFT RPC), with the
failure classes every poller reports alike.

A failure raises `HttpFailed` whose `code` is the bounded label of the caller's requests counter (the HTTP
status, `timeout`, `connection_error`, `invalid_body`), `retry_after` what a 429 asked for, and `detail` a
sentence for the log. The indexer's REST API sends Retry-After in milliseconds (express-rate-limit), most
other servers in seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import orjson

from exporter.feed.backoff import parse_retry_after
from exporter.feed.errors import describe, shorten


class HttpFailed(Exception):
    """`code` is the bounded label of a requests counter; `detail` a sentence for the log."""

    def __init__(self, code: str, retry_after: float = 0.0, detail: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.retry_after = retry_after
        self.detail = detail


class HoldOff:
    """What a 429 from one server asked of every client of that server. The indexer's REST limit is per
    client address, so a 429 answered to one poller (discovery, `/v4/height`, the book audits) holds the
    others too until its Retry-After has passed, instead of each of them spending a request to learn it."""

    __slots__ = ("_until",)

    def __init__(self) -> None:
        self._until = 0.0

    def remaining(self) -> float:
        return max(0.0, self._until - time.monotonic())

    def hold(self, seconds: float) -> None:
        self._until = max(self._until, time.monotonic() + seconds)


async def get_json(
    session: aiohttp.ClientSession,
    url: str,
    timeout: float,
    what: str,
    *,
    retry_after_milliseconds: bool = False,
    hold: HoldOff | None = None,
) -> Any:
    """The decoded JSON body of a 200 answer to GET `url`; raises HttpFailed. `what` names the answer
    expected, for the sentence of an answer that is not JSON ("a market list"). With `hold`, the request
    waits out a 429 that server gave any caller sharing it, and a 429 it gets holds them all."""
    if hold is not None and (wait := hold.remaining()) > 0.0:
        await asyncio.sleep(wait)
    try:
        async with asyncio.timeout(timeout):
            async with session.get(url) as resp:
                code = str(resp.status)
                if resp.status == 429:
                    retry = parse_retry_after(
                        resp.headers.get("Retry-After"), milliseconds=retry_after_milliseconds
                    )
                    if hold is not None:
                        hold.hold(retry)
                    raise HttpFailed(code, retry, f"HTTP 429 Too Many Requests (retry after {retry:g}s)")
                body = await resp.read()
                if resp.status != 200:
                    text = shorten(body.decode(errors="replace"), 200) or "no body"
                    status = f"HTTP {resp.status} {resp.reason or ''}".strip()
                    raise HttpFailed(code, 0.0, f"{status}: {text}")
    except TimeoutError:
        raise HttpFailed("timeout", 0.0, f"no answer within {timeout:g}s") from None
    except aiohttp.ClientError as exc:
        raise HttpFailed("connection_error", 0.0, describe(exc)) from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid_body(what, describe(exc)) from None


_T = TypeVar("_T")


async def counted(request: Awaitable[_T], report: Callable[[str, str, float], None], name: str) -> _T:
    """Await `request` (a GET and the reading of its answer) and report it to a requests counter as
    `report(name, code, seconds)`; code is "200", the HttpFailed's, or invalid_body if it broke otherwise."""
    started = time.monotonic()
    code = "invalid_body"
    try:
        result = await request
        code = "200"
        return result
    except HttpFailed as failure:
        code = failure.code
        raise
    finally:
        report(name, code, time.monotonic() - started)


def invalid_body(what: str, why: str) -> HttpFailed:
    """The failure of an answer that is not `what` ("a market list"), `why` saying how."""
    return HttpFailed("invalid_body", 0.0, f"the answer is not {what} ({why})")
