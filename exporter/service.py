"""The exporter as one object: Collector, MarketUniverse → Router → Pool/Discovery → WebServer.

`Exporter(settings)`, `await start()`, `url`, `await stop()`. The web server comes up first, so /metrics
and /healthz answer even while the indexer or its REST API is unreachable; `stop()` unsubscribes, closes
the sockets and the web server within `settings.shutdown_timeout`. `Readiness` is what /readyz answers and
what `dydx_ready` exports: one decision, two views.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from exporter import __version__
from exporter.config import Settings
from exporter.feed.audit import Auditor
from exporter.feed.discovery import Discovery
from exporter.feed.heads import Heads, HeadsSettings
from exporter.feed.http import HoldOff
from exporter.feed.pool import Pool
from exporter.feed.resync import Resyncer, ResyncPolicy
from exporter.logs import get_logger
from exporter.metrics.collector import Collector
from exporter.metrics.looplag import LoopLagProbe
from exporter.protocol import channels as ch
from exporter.state.audit import BookAudits
from exporter.state.router import Router
from exporter.state.universe import MarketUniverse
from exporter.web.app import WebServer

log = get_logger(__name__)


class Readiness:
    """/readyz's decision: the feed's reasons (links connected, subscriptions active), then the data's:
    each subscribed channel expected to flow has sent a frame within --data.stale-after."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self.pool: Pool | None = None

    def not_ready_reasons(self, now: float) -> list[str]:
        pool = self.pool
        if pool is None:
            return ["feed not started"]
        return [*pool.not_ready_reasons(now), *self._router.stale_channels(now, pool.active_channels())]

    def ready(self, now: float) -> bool:
        """True exactly when /readyz answers 200 (a failing check means not ready there too)."""
        try:
            return not self.not_ready_reasons(now)
        except Exception:
            return False

    def data_fresh(self, now: float) -> bool:
        """dydx_component_up{component="processor"}: some channel is subscribed and none is stale."""
        pool = self.pool
        active = pool.active_channels() if pool is not None else set()
        return bool(active) and not self._router.stale_channels(now, active)


class Exporter:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.collector = Collector(
            version=__version__, channels=settings.channels, subaccounts=settings.subaccounts
        )
        self.universe = MarketUniverse(settings.wants_market)
        self.router = Router(
            self.collector,
            self.universe,
            clock=clock,
            stale_after=settings.stale_after,
            id_grace=settings.message_id_grace,
            max_frame_bytes=settings.feed.max_frame_bytes,
        )
        self.readiness = Readiness(self.router)
        self.collector.set_component_probe("processor", self.readiness.data_fresh)
        self.collector.set_ready_probe(self.readiness.ready)
        self._loop_lag = LoopLagProbe(self.collector)
        self._session: aiohttp.ClientSession | None = None
        self._pool: Pool | None = None
        self._discovery: Discovery | None = None
        self._resyncer: Resyncer | None = None
        self._auditor: Auditor | None = None
        self._heads: Heads | None = None
        self._web: WebServer | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._started = False

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise RuntimeError("exporter not started")
        return self._pool

    @property
    def discovery(self) -> Discovery:
        if self._discovery is None:
            raise RuntimeError("exporter not started")
        return self._discovery

    @property
    def url(self) -> str:
        """Base URL of the web server on loopback (or on the host it is bound to)."""
        if self._web is None:
            raise RuntimeError("exporter not started")
        host = self.settings.listen_host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "[::1]"
        elif ":" in host:
            host = f"[{host}]"
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{host}:{self._web.port}"

    @property
    def metrics_url(self) -> str:
        return self.url + self.settings.telemetry_path

    async def start(self) -> None:
        s = self.settings
        middlewares: list[Any] = []
        if s.web_config is not None:  # read and validated with the settings (exporter.config)
            from exporter.web.webconfig import log_web_config

            log_web_config(s.web_config)
            self._ssl_context = s.web_config.ssl_context()
            middlewares = list(s.web_config.middlewares())
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=s.feed.handshake_timeout),
        )
        self._pool = Pool(s, self._session, self.router, self.collector, self.universe)
        self.readiness.pool = self._pool
        # One hold-off for every poller of the indexer's REST API: its rate limit is per client address.
        rest_hold = HoldOff()
        self._discovery = Discovery(s, self._session, self.universe, self.collector, self._pool, rest_hold)
        policy = ResyncPolicy(
            crossed_after=s.crossed_resync_after,
            book_interval=s.resync_interval,
            subaccount_interval=s.subaccount_refresh_interval if s.subaccounts else 0.0,
            # A quarter of the subscribe budget at most: the pool's own subscribes come first.
            max_per_second=max(1.0, s.feed.subscribe_rate / 4),
        )
        self._resyncer = Resyncer(policy, self._pool, self.router.books)
        pool = self._pool
        self._auditor = Auditor(
            s.audit_interval,
            BookAudits(self.router.books.books, self.collector),
            lambda: [key[1] for key in pool.active_keys(ch.ORDERBOOK) if key[1] is not None],
            self._session,
            s.feed.rest_url,
            s.feed.discovery_timeout,
            self.collector.rest_request,
            window=s.audit_window,
            rest_hold=rest_hold,
        )
        heads = HeadsSettings(
            chain_rpc_urls=s.chain_rpc_urls,
            network=s.network,
            rest_url=s.feed.rest_url,
            chain_poll_interval=s.chain_poll_interval,
            rest_height_interval=s.rest_height_interval,
            timeout=s.feed.discovery_timeout,
            backoff_initial=s.feed.backoff_initial,
            backoff_max=s.feed.backoff_max,
        )
        self._heads = Heads(
            heads, self._session, self.collector.heads, self.collector.rest_request, rest_hold
        )
        self._web = WebServer(
            s.listen_host,
            s.listen_port,
            s.telemetry_path,
            self.collector.registry,
            [self.readiness],
            middlewares=middlewares,
            ssl_context=self._ssl_context,
        )
        try:
            await self._web.start()
            await self._loop_lag.start()
            self.collector.component_up("websocket", False)
            self.collector.component_up("rest", False)
            await self._pool.start()
            await self._discovery.start()
            await self._resyncer.start()
            await self._auditor.start()
            await self._heads.start()  # a chain RPC on another network ends the start here
        except BaseException:
            await self.stop()
            raise
        self._started = True
        log.info(
            "exporter_started",
            url=self.url,
            telemetry_path=s.telemetry_path,
            ws_url=s.feed.ws_url,
            rest_url=s.feed.rest_url,
            channels=list(s.channels),
            shard=f"{s.shard_index}/{s.shard_count}",
        )

    async def stop(self) -> None:
        """Idempotent. Bounded by settings.shutdown_timeout; whatever is left is cancelled."""
        started = time.monotonic()
        budget = self.settings.shutdown_timeout
        try:
            async with asyncio.timeout(max(0.5, budget - 0.5)):
                if self._heads is not None:
                    await self._heads.stop()
                if self._resyncer is not None:
                    await self._resyncer.stop()
                if self._auditor is not None:
                    await self._auditor.stop()
                if self._discovery is not None:
                    await self._discovery.stop()
                if self._pool is not None:
                    await self._pool.stop()
        except TimeoutError:
            log.error("shutdown_feed_timeout", seconds=budget)
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()
            self._session = None
        await self._loop_lag.stop()
        if self._web is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(max(0.2, budget - (time.monotonic() - started))):
                    await self._web.stop()
        if self._started:
            log.info("exporter_stopped", seconds=round(time.monotonic() - started, 3))
        self._started = False
