"""Fresh snapshots on purpose: resubscribe order books that stay crossed, and refresh everything periodically.

The indexer's uncross task deletes crossed "ghost" levels from its book without publishing an update
(reference §4.1), so a streamed book can stay crossed until the next update at that price, which on a quiet
market may never come. The only cure is a new snapshot: unsubscribe, subscribe (the REST-backed snapshot
is uncrossed). The order book handler says which books are crossed since when; the decision, and the
subscribing, belong to the feed:

- `crossed`: a book crossed as delivered for `crossed_after` seconds is resubscribed, at most once per
  `crossed_after` per market (a snapshot that is itself crossed must not cause a resubscribe loop);
- `periodic`: every active book is resubscribed every `book_interval` seconds, and every subaccount every
  `subaccount_interval` (equity and free collateral only come in snapshots). Keys first seen together
  (start, reconnect) are spread evenly over one interval, and at most `max_per_second` periodic
  resubscribes go out per second, so they never crowd out the subscribes the pool itself needs (all of
  them also pass the pool's global pacer and its 0.6 s same-key gap).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from exporter.feed.connection import SubKey
from exporter.lifecycle import BackgroundTask
from exporter.logs import get_logger
from exporter.protocol import channels as ch

log = get_logger("exporter.feed.resync")

CROSSED, PERIODIC = "crossed", "periodic"
MIN_TICK_S = 0.05
MAX_TICK_S = 1.0


class BookWatch(Protocol):
    """What the resyncer needs of the pipeline (exporter.state.orderbook.OrderbookHandler)."""

    def crossed_books(self) -> Mapping[str, float]:
        """Markets whose order book, as delivered, is crossed now → wall-clock time crossed since."""

    def expect_resync(self, channel: str, sub_id: str, reason: str) -> None:
        """The feed is resubscribing (channel, sub_id) for a fresh snapshot, for `reason` (crossed,
        periodic): its next snapshot counts as that resync."""


class Resubscriber(Protocol):
    """What the resyncer needs of the pool (exporter.feed.pool.Pool)."""

    def active_keys(self, channel: str) -> list[SubKey]: ...

    def resync(self, key: SubKey) -> bool: ...


@dataclass(frozen=True, slots=True)
class ResyncPolicy:
    """Seconds; 0 turns a rule off."""

    crossed_after: float = 30.0
    book_interval: float = 0.0
    subaccount_interval: float = 0.0
    max_per_second: float = 10.0

    @property
    def enabled(self) -> bool:
        return self.crossed_after > 0 or self.book_interval > 0 or self.subaccount_interval > 0

    @property
    def tick(self) -> float:
        """How often the rules are checked: a quarter of the shortest period, within [50 ms, 1 s]."""
        periods = [p for p in (self.crossed_after, self.book_interval, self.subaccount_interval) if p > 0]
        return max(MIN_TICK_S, min([MAX_TICK_S, *(p / 4 for p in periods)]))


class Resyncer:
    def __init__(
        self,
        policy: ResyncPolicy,
        pool: Resubscriber,
        sink: BookWatch,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._policy = policy
        self._pool = pool
        self._sink = sink
        self._clock = clock
        self._task = BackgroundTask("resync")
        #: market → wall-clock time of its last `crossed` resubscribe (the cooldown).
        self._crossed_at: dict[str, float] = {}
        #: key → wall-clock time its periodic resubscribe is due; only keys active at the last check.
        self._due: dict[SubKey, float] = {}
        self._allowance = 0.0
        self._last_check: float | None = None

    async def start(self) -> None:
        if self._policy.enabled:
            self._task.start(self._loop)

    async def stop(self) -> None:
        await self._task.stop()

    async def _loop(self) -> None:
        tick = self._policy.tick
        while True:
            await asyncio.sleep(tick)
            try:
                self.check()
            except Exception as exc:  # a bug here must not end resyncing for the life of the process
                log.error("resync_check_failed", error=repr(exc)[:300])

    def check(self) -> list[tuple[SubKey, str]]:
        """Apply the rules once; returns the (key, reason) resubscribes started."""
        now = self._clock()
        started: list[tuple[SubKey, str]] = []
        policy = self._policy
        if policy.crossed_after > 0:
            self._check_crossed(now, started)
        intervals = ((ch.ORDERBOOK, policy.book_interval), (ch.SUBACCOUNTS, policy.subaccount_interval))
        if any(interval > 0 for _, interval in intervals):
            elapsed = 0.0 if self._last_check is None else max(0.0, now - self._last_check)
            rate = policy.max_per_second
            # A token bucket holding at most one second's worth (and at least one, for tiny rates).
            self._allowance = min(max(1.0, rate), self._allowance + elapsed * rate)
            for channel, interval in intervals:
                if interval > 0:
                    self._check_periodic(channel, interval, now, started)
        self._last_check = now
        return started

    def _check_crossed(self, now: float, started: list[tuple[SubKey, str]]) -> None:
        after = self._policy.crossed_after
        crossed = self._sink.crossed_books()
        for ticker in [
            t for t in self._crossed_at if t not in crossed and now - self._crossed_at[t] >= after
        ]:
            del self._crossed_at[ticker]  # forget markets long uncrossed (or gone)
        for ticker, since in crossed.items():
            if now - since < after or now - self._crossed_at.get(ticker, -math.inf) < after:
                continue
            key: SubKey = (ch.ORDERBOOK, ticker)
            if not self._pool.resync(key):
                continue
            self._sink.expect_resync(ch.ORDERBOOK, ticker, CROSSED)
            self._crossed_at[ticker] = now
            if key in self._due:
                self._due[key] = now + self._policy.book_interval
            started.append((key, CROSSED))
            log.info(
                "orderbook_resync_requested", market=ticker, reason=CROSSED, crossed_for=round(now - since, 3)
            )

    def _check_periodic(
        self, channel: str, interval: float, now: float, started: list[tuple[SubKey, str]]
    ) -> None:
        active = self._pool.active_keys(channel)
        active_set = set(active)
        for key in [k for k in self._due if k[0] == channel and k not in active_set]:
            del self._due[key]  # gone, or down: it gets a fresh snapshot on its own and a new due time
        new = [key for key in active if key not in self._due]
        for index, key in enumerate(sorted(new, key=lambda k: k[1] or "")):
            self._due[key] = now + interval * (index + 1) / len(new)
        due = sorted((at, key) for key, at in self._due.items() if key[0] == channel and at <= now)
        for _, key in due:
            if self._allowance < 1.0:
                return
            if not self._pool.resync(key):
                continue
            self._allowance -= 1.0
            self._due[key] = now + interval
            if channel == ch.ORDERBOOK and key[1] is not None:
                self._sink.expect_resync(channel, key[1], PERIODIC)
            started.append((key, PERIODIC))
