"""Periodic book audits (--orderbook.audit-interval): each subscribed order book against a REST snapshot.

The books are audited in turn (sorted by ticker, round robin), one started every interval / books seconds
and never more than MAX_PER_SECOND a second, so a cycle covers every book once per interval while REST
stays far inside the indexer's limit (100 GETs per 10 s per IP, reference §1): 267 markets at the 10m
default are 0.45 requests/s. Each audit lasts about twice the race window (exporter.state.audit), so a few
overlap. A 429 pauses the audits for what it asks (Retry-After) and abandons those in flight; any other
failure skips that book until its next turn. Every request counts in dydx_rest_requests_total.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from exporter.feed.http import HoldOff, HttpFailed, counted, get_json, invalid_body
from exporter.lifecycle import BackgroundTask, cancel_and_wait
from exporter.logs import get_logger
from exporter.protocol.frames import positive
from exporter.state.audit import BookAudits, Levels

log = get_logger(__name__)

ORDERBOOK_ENDPOINT: Final = "/v4/orderbooks/perpetualMarket/{ticker}"
MAX_PER_SECOND: Final = 1.0
#: (endpoint, code, seconds) of one REST request: dydx_rest_requests_total.
RestRequests = Callable[[str, str, float], None]


def parse_levels(body: Any) -> tuple[Levels, Levels]:
    """A REST order book → (bids, asks); HttpFailed(invalid_body) for anything else."""
    if not isinstance(body, dict):
        raise invalid_body("an order book", "not a JSON object")
    sides: list[Levels] = []
    for name in ("bids", "asks"):
        rows = body.get(name)
        if not isinstance(rows, list):
            raise invalid_body("an order book", f"{name} is not a list")
        levels = []
        for row in rows:
            price = positive(row.get("price")) if isinstance(row, dict) else None
            size = positive(row.get("size")) if isinstance(row, dict) else None
            if price is None or size is None:
                raise invalid_body("an order book", f"a level is not {{price, size}}: {str(row)[:80]}")
            levels.append((price, size))
        sides.append(levels)
    return sides[0], sides[1]


class Auditor:
    def __init__(
        self,
        interval: float,
        audits: BookAudits,
        subscribed: Callable[[], list[str]],
        session: aiohttp.ClientSession,
        rest_url: str,
        timeout: float,
        requests: RestRequests,
        *,
        window: float,
        rest_hold: HoldOff,
    ) -> None:
        """`subscribed()` lists the markets whose order book subscription is active now; `window` is how
        long before and after its fetch an audit watches for updated levels (--orderbook.audit-window)."""
        self._interval = interval
        self._audits = audits
        self._subscribed = subscribed
        self._session = session
        self._base = rest_url.rstrip("/")
        self._timeout = timeout
        self._requests = requests
        self._window = window
        self._rest_hold = rest_hold
        self._task = BackgroundTask("audit")
        self._running: dict[str, asyncio.Task[None]] = {}
        self._paused_until = 0.0
        self._last: str | None = None

    async def start(self) -> None:
        if self._interval > 0:
            self._task.start(self._loop)

    async def stop(self) -> None:
        await self._task.stop()  # first, so no new audit starts while the running ones are cancelled
        await cancel_and_wait(*self._running.values())

    async def _loop(self) -> None:
        while True:
            tickers = sorted(self._subscribed())
            await asyncio.sleep(max(1.0 / MAX_PER_SECOND, self._interval / max(1, len(tickers))))
            if not tickers or time.monotonic() < self._paused_until:
                continue
            # The next market after the last one audited: a market listed meanwhile takes its turn.
            ticker = next((t for t in tickers if self._last is None or t > self._last), tickers[0])
            self._last = ticker
            if ticker not in self._running and self._audits.begin(ticker):
                task = asyncio.create_task(self._audit(ticker), name=f"audit-{ticker}")
                self._running[ticker] = task
                task.add_done_callback(lambda _, t=ticker: self._running.pop(t, None))  # type: ignore[misc]

    async def _audit(self, ticker: str) -> None:
        try:
            await asyncio.sleep(self._window)
            bids, asks = await counted(self._fetch(ticker), self._requests, ORDERBOOK_ENDPOINT)
            await asyncio.sleep(self._window)
        except HttpFailed as failure:
            self._audits.abandon([ticker])
            if failure.retry_after > 0:
                self._paused_until = time.monotonic() + failure.retry_after
                self._audits.abandon(self._running)
            log.warning("orderbook_audit_failed", market=ticker, code=failure.code, error=failure.detail)
            return
        except BaseException:
            self._audits.abandon([ticker])
            raise
        self._audits.finish(ticker, bids, asks)

    async def _fetch(self, ticker: str) -> tuple[Levels, Levels]:
        url = self._base + ORDERBOOK_ENDPOINT.format(ticker=quote(ticker, safe=""))
        body = await get_json(
            self._session,
            url,
            self._timeout,
            "an order book",
            retry_after_milliseconds=True,
            hold=self._rest_hold,
        )
        return parse_levels(body)
