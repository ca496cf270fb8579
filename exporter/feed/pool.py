"""Subscriptions spread over as many links as the per-channel cap requires, paced under the rate limit.

Placement is sticky: a subscription stays on its link until its market goes away, so a listing or a
delisting never moves (and re-snapshots) anything else. `v4_markets` lives on conn-0, `v4_block_height`
on every link (each link's own head and silence watchdog); per-market channels fill links in order, at
most `max_subscriptions` (32) per channel per link. With the default channels and N markets that is
ceil(N / 32) links: 9 for about 270 markets.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable

import aiohttp

from exporter.config import Settings
from exporter.feed.backoff import Pacer
from exporter.feed.connection import SUB_STATES, Link, LinkDeps, SubKey
from exporter.feed.sink import FeedObserver, FrameSink
from exporter.logs import get_logger
from exporter.protocol import channels as ch
from exporter.state.universe import MarketsChanged, MarketUniverse

log = get_logger(__name__)


def market_keys(settings: Settings, ticker: str) -> list[SubKey]:
    """Every subscription one market needs under `settings` (candles once per resolution)."""
    resolutions = settings.candle_resolutions
    return [
        (channel, sub_id)
        for channel in settings.market_channels
        for sub_id in ch.CHANNELS[channel].market_ids(ticker, resolutions)
    ]


def global_keys(settings: Settings) -> list[SubKey]:
    return [(c, None) for c in settings.channels if ch.CHANNELS[c].scope == "feed"]


def account_keys(settings: Settings) -> list[SubKey]:
    """The subaccounts of --subaccounts (v4_subaccounts, up to 256 per link)."""
    return [(ch.SUBACCOUNTS, sub_id) for sub_id in settings.subaccounts]


def links_needed(settings: Settings, market_count: int) -> int:
    """How many links `market_count` markets take (the planning rule the pool follows)."""
    # Each channel needs ceil(subs / cap) links; candles carry one subscription per resolution.
    worst = 0
    for channel in settings.market_channels:
        per_market = len(ch.CHANNELS[channel].market_ids("", settings.candle_resolutions))
        cap = min(settings.feed.max_subscriptions, ch.CHANNELS[channel].cap)
        worst = max(worst, -(-market_count * per_market // cap))
    return max(1, worst)


class Pool:
    """Owns the links. It follows `universe` (every change sets the wanted markets), or is told the
    markets directly with `set_markets`; the pool does the rest."""

    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        sink: FrameSink,
        observer: FeedObserver,
        universe: MarketUniverse | None = None,
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._observer = observer
        rate = settings.feed.subscribe_rate
        pacer = Pacer(rate, burst=max(1, int(rate / 4)))
        self._link_deps = LinkDeps(settings.feed, session, sink, observer, pacer, self)
        self._links: list[Link] = []
        self._placement: dict[SubKey, Link] = {}
        self._caps: dict[tuple[str, str], int] = {}  # (link, channel) → cap lowered by the server
        self._markets: frozenset[str] = frozenset()
        self._markets_known = False
        self._started = False
        self._universe = universe
        if universe is not None:
            universe.subscribe(self._follow)

    @property
    def links(self) -> tuple[Link, ...]:
        return tuple(self._links)

    @property
    def markets(self) -> frozenset[str]:
        return self._markets

    def link_of(self, key: SubKey) -> Link | None:
        return self._placement.get(key)

    async def start(self) -> None:
        self._started = True
        first = self._links[0] if self._links else self._new_link()
        first.want(global_keys(self._settings))
        for key in global_keys(self._settings):
            self._placement[key] = first
        for key in account_keys(self._settings):
            if key not in self._placement:
                self._place(key)
        for link in self._links:
            link.launch()
        self.subscriptions_changed()

    async def stop(self) -> None:
        self._started = False
        await asyncio.gather(*(link.stop() for link in self._links), return_exceptions=True)
        self._observer.component_up("websocket", False)

    # --- what discovery drives -----------------------------------------------------------------------

    def set_markets(self, tickers: Iterable[str]) -> None:
        wanted = frozenset(tickers)
        self._markets_known = True
        removed = self._markets - wanted
        added = sorted(wanted - self._markets)
        self._markets = wanted
        if removed:
            by_link: dict[Link, list[SubKey]] = {}
            for ticker in removed:
                for key in market_keys(self._settings, ticker):
                    link = self._placement.pop(key, None)
                    if link is not None:
                        by_link.setdefault(link, []).append(key)
            for link, keys in by_link.items():
                link.unwant(keys)
            for ticker in removed:
                self._sink.forget_market(ticker)
            log.info("markets_removed", count=len(removed), markets=sorted(removed)[:20])
        if added:
            for ticker in added:
                for key in market_keys(self._settings, ticker):
                    self._place(key)
            log.info("markets_added", count=len(added), markets=added[:20], links=len(self._links))
        self.subscriptions_changed()

    def _follow(self, change: MarketsChanged) -> None:
        assert self._universe is not None
        self.set_markets(self._universe.wanted())

    def retry_given_up(self) -> None:
        for link in self._links:
            link.retry_given_up()

    def active_channels(self) -> set[str]:
        """Channels with at least one active subscription now."""
        return {key[0] for key, link in self._placement.items() if link.state_of(key) == "active"}

    def active_keys(self, channel: str) -> list[SubKey]:
        """Subscriptions of `channel` that are active now."""
        return [
            key
            for key, link in self._placement.items()
            if key[0] == channel and link.state_of(key) == "active"
        ]

    def resync(self, key: SubKey) -> bool:
        """Resubscribe `key` on its link for a fresh snapshot; False when it is not active there."""
        link = self._placement.get(key)
        return link is not None and link.resync(key)

    # --- LinkEvents ----------------------------------------------------------------------------------

    def subscriptions_changed(self) -> None:
        counts: Counter[tuple[str, str]] = Counter()
        for channel in self._settings.channels:
            for state in SUB_STATES:
                counts[(channel, state)] = 0
        for link in self._links:
            counts.update(link.counts())
        self._observer.subscriptions(counts)
        # Up while any link is (the catalog's definition); a partial outage shows in dydx_ws_connected
        # and /readyz.
        self._observer.component_up("websocket", any(link.up for link in self._links))

    def limit_reached(self, link: Link, key: SubKey) -> None:
        """The server refused one more subscription on `link`: lower its cap and move the key."""
        channel = key[0]
        active = sum(1 for k in link.keys if k[0] == channel and link.state_of(k) == "active")
        self._caps[(link.name, channel)] = max(0, active)
        link.unwant([key])
        self._placement.pop(key, None)
        log.warning("subscription_limit_reached", link=link.name, channel=channel, cap=active)
        self._place(key)

    # --- readiness -----------------------------------------------------------------------------------

    def not_ready_reasons(self, now: float) -> list[str]:
        reasons: list[str] = []
        if self._settings.market_channels and not self._markets_known:
            reasons.append("no market list yet (REST discovery or v4_markets snapshot)")
        for link in self._links:
            reasons.extend(link.not_ready_reasons())
        return reasons

    # --- placement -----------------------------------------------------------------------------------

    def _cap(self, link: Link, channel: str) -> int:
        cap = ch.CHANNELS[channel].cap
        if channel in self._settings.market_channels:  # --feed.max-subscriptions is about market channels
            cap = min(self._settings.feed.max_subscriptions, cap)
        return min(cap, self._caps.get((link.name, channel), cap))

    def _place(self, key: SubKey) -> None:
        channel = key[0]
        for link in self._links:
            if link.count(channel) < self._cap(link, channel):
                break
        else:
            link = self._new_link()
            if self._started:
                link.launch()
        link.want([key])
        self._placement[key] = link

    def _new_link(self) -> Link:
        link = Link(f"conn-{len(self._links)}", self._link_deps)
        self._links.append(link)
        # v4_block_height on every link (once per connection is allowed): each link's own head, and its
        # own silence watchdog. Its placement stays with conn-0, which carries the feed-wide channels.
        if ch.BLOCK_HEIGHT in self._settings.channels:
            link.want([(ch.BLOCK_HEIGHT, None)])
        return link
