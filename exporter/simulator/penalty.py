"""socks' subscription-limit abuse rule and reconnect penalty (protocol reference §6, PR #3382).

A connection that hits a per-connection subscription cap more than ABUSE_HITS times within ABUSE_WINDOW_S
(`AbuseCounter`, one per connection, every channel and id together) is dropped with 4008; its address is
then refused upgrades for RECONNECT_PENALTY_S with a 429 (`PenaltyBox`). The optional edge block plays the
CDN in front: EDGE_BLOCK_REFUSALS penalty refusals of one address within EDGE_BLOCK_WINDOW_S block it for
EDGE_BLOCK_S with a JSON 429.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

import orjson
from aiohttp import web

from exporter.protocol import channels as ch

#: Addresses remembered at most; a flood of distinct ones forgets expired entries first.
_MAX_ADDRESSES = 4096


def client_address(request: web.Request) -> str:
    """The address socks penalizes: `cf-connecting-ip`, else the left-most `x-forwarded-for`, else the
    socket's peer."""
    forwarded = request.headers.get("cf-connecting-ip", "").strip()
    if not forwarded:
        forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
    return forwarded or request.remote or ""


class AbuseCounter:
    """Cap hits of one connection in a sliding window: `hit` is True once there are more than `limit`."""

    __slots__ = ("_hits", "_limit", "_window")

    def __init__(self, limit: int = ch.ABUSE_HITS, window: float = ch.ABUSE_WINDOW_S) -> None:
        self._hits: deque[float] = deque()
        self._limit = limit
        self._window = window

    def hit(self, now: float) -> bool:
        hits = self._hits
        hits.append(now)
        while hits[0] <= now - self._window:
            hits.popleft()
        return len(hits) > self._limit


class PenaltyBox:
    """Addresses whose upgrades are refused, and (with `edge_block`) the edge's longer block."""

    def __init__(self, *, edge_block: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.edge_block = edge_block
        self._clock = clock
        self._penalized: dict[str, float] = {}  # address → monotonic end of its penalty
        self._blocked: dict[str, float] = {}  # address → monotonic end of its edge block
        self._refusals: dict[str, deque[float]] = {}

    def penalize(self, address: str, seconds: float) -> None:
        now = self._clock()
        if len(self._penalized) >= _MAX_ADDRESSES:
            self._penalized = {a: end for a, end in self._penalized.items() if end > now}
        self._penalized[address] = max(self._penalized.get(address, 0.0), now + seconds)

    def clear(self) -> None:
        self._penalized.clear()
        self._blocked.clear()
        self._refusals.clear()

    def refusal(self, address: str) -> web.Response | None:
        """The 429 an upgrade from `address` gets now, or None when it may connect."""
        now = self._clock()
        blocked_until = self._blocked.get(address)
        if blocked_until is not None:
            if now < blocked_until:
                return _edge_block(blocked_until - now)
            del self._blocked[address]
        until = self._penalized.get(address)
        if until is None:
            return None
        if now >= until:
            del self._penalized[address]
            return None
        if self.edge_block and self._count_refusal(address, now):
            self._blocked[address] = now + ch.EDGE_BLOCK_S
        return web.Response(
            status=429,
            text="Too Many Requests",
            headers={
                "Retry-After": str(max(1, math.ceil(until - now))),
                ch.RATELIMIT_REASON_HEADER: ch.RATELIMIT_REASON_ABUSE,
            },
        )

    def _count_refusal(self, address: str, now: float) -> bool:
        """One more penalty refusal of `address`; True when it earns the edge block."""
        if address not in self._refusals and len(self._refusals) >= _MAX_ADDRESSES:
            self._refusals = {
                a: q for a, q in self._refusals.items() if q and q[-1] > now - ch.EDGE_BLOCK_WINDOW_S
            }
        refusals = self._refusals.setdefault(address, deque())
        refusals.append(now)
        while refusals[0] <= now - ch.EDGE_BLOCK_WINDOW_S:
            refusals.popleft()
        if len(refusals) >= ch.EDGE_BLOCK_REFUSALS:
            del self._refusals[address]
            return True
        return False


def _edge_block(remaining: float) -> web.Response:
    body = {"error": ch.EDGE_BLOCK_ERROR, "retryAfterSeconds": max(1, math.ceil(remaining))}
    return web.Response(
        status=429,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={"Retry-After": str(max(1, math.ceil(remaining)))},
    )
