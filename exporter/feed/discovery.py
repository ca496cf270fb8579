"""Market discovery: REST /v4/perpetualMarkets at start and every few minutes, plus the v4_markets channel.

The REST list is authoritative (a market missing from it is gone); `MarketsChanged` from the WebSocket
catches listings and status changes between refreshes. Either way the wanted set is every market not in
FINAL_SETTLEMENT that passes --markets and --shard, and the pool subscribes or unsubscribes the
difference. REST being down or slow never blocks the exporter: it keeps retrying with backoff and honours
429 `Retry-After`, which the indexer's REST API gives in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from exporter.config import Settings
from exporter.feed.backoff import Backoff, parse_retry_after
from exporter.feed.errors import describe, shorten
from exporter.feed.pool import Pool
from exporter.feed.sink import FeedObserver, FrameSink, MarketsChanged
from exporter.lifecycle import cancel_and_wait
from exporter.logs import get_logger

log = get_logger(__name__)

MARKETS_ENDPOINT = "/v4/perpetualMarkets"
DELISTED_STATUSES = frozenset({"FINAL_SETTLEMENT"})


class RestFailed(Exception):
    """`code` is the bounded label of dydx_rest_requests_total; `detail` a sentence for the log."""

    def __init__(self, code: str, retry_after: float = 0.0, detail: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.retry_after = retry_after
        self.detail = detail


class Discovery:
    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        sink: FrameSink,
        observer: FeedObserver,
        pool: Pool,
    ) -> None:
        self._settings = settings
        self._session = session
        self._sink = sink
        self._observer = observer
        self._pool = pool
        self._task: asyncio.Task[None] | None = None
        self._refresh = asyncio.Event()
        self.fetches = 0
        pool.on_markets_changed = self.on_markets_changed

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="discovery")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def refresh_now(self) -> None:
        """Ask for a REST refresh without waiting for the interval."""
        self._refresh.set()

    def on_markets_changed(self, change: MarketsChanged) -> None:
        """From the v4_markets channel (via the pool)."""
        if change.listed or change.delisted:
            log.info("markets_changed", listed=list(change.listed[:20]), delisted=list(change.delisted[:20]))
        self._apply(change.markets)

    def wanted(self, statuses: Mapping[str, str]) -> set[str]:
        return {
            ticker
            for ticker, status in statuses.items()
            if status not in DELISTED_STATUSES and self._settings.wants_market(ticker)
        }

    def _apply(self, statuses: Mapping[str, str]) -> None:
        self._pool.set_markets(self.wanted(statuses))

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
            self._sink.load_markets(markets)
            statuses = {ticker: str(m.get("status", "ACTIVE")) for ticker, m in markets.items()}
            self._apply(statuses)
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
        url = self._settings.feed.rest_url + MARKETS_ENDPOINT
        started = time.monotonic()
        code = "error"
        try:
            async with asyncio.timeout(self._settings.feed.discovery_timeout):
                async with self._session.get(url) as resp:
                    code = str(resp.status)
                    if resp.status == 429:
                        retry = parse_retry_after(resp.headers.get("Retry-After"), milliseconds=True)
                        raise RestFailed(code, retry, f"HTTP 429 Too Many Requests (retry after {retry:g}s)")
                    body = await resp.read()
                    if resp.status != 200:
                        text = shorten(body.decode(errors="replace"), 200) or "no body"
                        status = f"HTTP {resp.status} {resp.reason or ''}".strip()
                        raise RestFailed(code, 0.0, f"{status}: {text}")
            try:
                data = orjson.loads(body)
                if not isinstance(data, dict) or "markets" not in data:
                    raise TypeError("no markets object")
                markets = data["markets"]
                if not isinstance(markets, dict) or not all(isinstance(m, dict) for m in markets.values()):
                    raise TypeError("markets is not a mapping of objects")
            except (orjson.JSONDecodeError, TypeError) as exc:
                code = "invalid_body"
                raise RestFailed(code, 0.0, f"the answer is not a market list ({describe(exc)})") from None
            return markets
        except TimeoutError:
            code = "timeout"
            timeout = self._settings.feed.discovery_timeout
            raise RestFailed(code, 0.0, f"no answer within {timeout:g}s") from None
        except aiohttp.ClientError as exc:
            code = "connection_error"
            raise RestFailed(code, 0.0, describe(exc)) from None
        finally:
            self._observer.rest_request(MARKETS_ENDPOINT, code, time.monotonic() - started)
