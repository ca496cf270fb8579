"""Market discovery: REST /v4/perpetualMarkets at start and every few minutes, into the market universe.

The REST list is authoritative (a market missing from it is gone); the v4_markets channel feeds the same
universe between refreshes. The pool follows the universe: the wanted set is every market not in
FINAL_SETTLEMENT that passes --markets and --shard. REST being down or slow never blocks the exporter: it
keeps retrying with backoff and honours 429 `Retry-After`, which the indexer's REST API gives in
milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import aiohttp

from exporter.config import Settings
from exporter.feed.backoff import Backoff
from exporter.feed.http import HoldOff, counted, get_json, invalid_body
from exporter.feed.http import HttpFailed as RestFailed
from exporter.feed.pool import Pool
from exporter.feed.sink import FeedObserver
from exporter.lifecycle import BackgroundTask
from exporter.logs import get_logger
from exporter.state.universe import DELISTED_STATUSES, MarketUniverse

log = get_logger(__name__)

MARKETS_ENDPOINT = "/v4/perpetualMarkets"
MARKET_LIST = "a market list"
__all__ = ["DELISTED_STATUSES", "MARKETS_ENDPOINT", "Discovery", "RestFailed"]


class Discovery:
    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        universe: MarketUniverse,
        observer: FeedObserver,
        pool: Pool,
        rest_hold: HoldOff,
    ) -> None:
        """`pool` is asked to retry the markets it gave up on after each refresh; `rest_hold` is the REST
        API's hold-off, shared with every other poller of it."""
        self._settings = settings
        self._rest_hold = rest_hold
        self._session = session
        self._universe = universe
        self._observer = observer
        self._pool = pool
        self._task = BackgroundTask("discovery")
        self._refresh = asyncio.Event()
        self.fetches = 0

    async def start(self) -> None:
        self._task.start(self._loop)

    async def stop(self) -> None:
        await self._task.stop()

    def refresh_now(self) -> None:
        """Ask for a REST refresh without waiting for the interval."""
        self._refresh.set()

    async def _loop(self) -> None:
        feed = self._settings.feed
        backoff = Backoff(feed.backoff_initial, max(feed.backoff_max, feed.backoff_initial))
        while True:
            try:
                markets = await self.fetch_markets()
            except RestFailed as failure:
                self._observer.component_up("rest", False)
                delay = backoff.next_delay(failure.retry_after)
                log.warning(
                    "rest_discovery_failed",
                    endpoint=MARKETS_ENDPOINT,
                    code=failure.code,
                    url=self._settings.feed.rest_url + MARKETS_ENDPOINT,
                    error=failure.detail,
                    retry_in=round(delay, 3),
                )
                await self._wait(delay)
                continue
            self._observer.component_up("rest", True)
            backoff.reset()
            self._universe.load(markets)
            self._pool.retry_given_up()
            await self._wait(feed.discovery_interval)

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._refresh.wait()
        self._refresh.clear()

    async def fetch_markets(self) -> dict[str, Mapping[str, Any]]:
        """One GET of the market list; reports dydx REST metrics; raises RestFailed."""
        self.fetches += 1
        return await counted(self._get_markets(), self._observer.rest_request, MARKETS_ENDPOINT)

    async def _get_markets(self) -> dict[str, Mapping[str, Any]]:
        data = await get_json(
            self._session,
            self._settings.feed.rest_url + MARKETS_ENDPOINT,
            self._settings.feed.discovery_timeout,
            MARKET_LIST,
            retry_after_milliseconds=True,
            hold=self._rest_hold,
        )
        if not isinstance(data, dict) or "markets" not in data:
            raise invalid_body(MARKET_LIST, "no markets object")
        markets = data["markets"]
        if not isinstance(markets, dict) or not all(isinstance(m, dict) for m in markets.values()):
            raise invalid_body(MARKET_LIST, "markets is not a mapping of objects")
        return markets
