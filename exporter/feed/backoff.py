"""Exponential backoff with full jitter and a cap, and a global subscribe pacer.

Full jitter (delay uniform in [0, min(cap, initial * 2**attempt)]) spreads a fleet of reconnecting links
over the whole window instead of synchronising them into storms.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        initial: float,
        cap: float,
        *,
        multiplier: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or cap < initial or multiplier < 1:
            raise ValueError("backoff needs 0 < initial <= cap and multiplier >= 1")
        self.initial = initial
        self.cap = cap
        self.multiplier = multiplier
        self.attempt = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """Upper bound of the next delay."""
        return min(self.cap, self.initial * self.multiplier**self.attempt)

    def next_delay(self, at_least: float = 0.0) -> float:
        """The next delay; `at_least` (a server's Retry-After) is honoured on top of the jitter window."""
        delay = self._rng.uniform(0.0, self.ceiling())
        if self.attempt < 64:  # the ceiling saturates at the cap long before; avoid float overflow
            self.attempt += 1
        return max(delay, at_least)

    def reset(self) -> None:
        self.attempt = 0


class Pacer:
    """A token bucket shared by every link: at most `rate` subscribes per second, bursts of `burst`."""

    def __init__(self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("pacer needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> None:
        async with self._lock:  # FIFO: links are served in the order they asked
            while True:
                self._refill()
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)


#: A server asking for more than this is honoured only up to it: the link must come back eventually.
MAX_RETRY_AFTER_S = 3600.0


def parse_retry_after(value: str | None, *, milliseconds: bool = False) -> float:
    """Seconds to wait from a Retry-After header; 0.0 when absent or unparseable.

    HTTP (and the WebSocket handshake at the edge) uses seconds or an HTTP date; the indexer's REST API
    sends milliseconds (express-rate-limit), hence `milliseconds`.
    """
    if not value:
        return 0.0
    try:
        number = float(value.strip())
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return 0.0
        number = when.timestamp() - time.time()
        milliseconds = False
    if number != number or number <= 0:
        return 0.0
    seconds = number / 1000.0 if milliseconds else number
    return min(seconds, MAX_RETRY_AFTER_S)
