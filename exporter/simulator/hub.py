"""Fan-out: who is subscribed to what, and delivery of each update to them.

Each update's body is encoded once and shared by every unbatched subscriber (the per-connection prefix is
concatenated by the session). Batched subscribers share a buffer per (channel, id) — as socks does, so a
new batched subscriber may receive updates buffered before it subscribed — flushed by one server-wide timer
into one `channel_batch_data` frame per (channel, id, version, subaccountNumber).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any, Protocol

import orjson

from exporter.protocol import channels as ch
from exporter.protocol import encode
from exporter.simulator.truth import Ledger, Stats

Key = tuple[str, str | None]


class Subscriber(Protocol):
    def send_data(self, body: bytes) -> None: ...

    def send_batch(self, body: bytes) -> None: ...


class Hub:
    def __init__(self, stats: Stats) -> None:
        self._stats = stats
        #: Ground truth: what subscribers were sent (GET /control/truth).
        self.ledger = Ledger()
        self.subs: dict[Key, dict[Subscriber, bool]] = {}
        self._heads: dict[Key, bytes] = {}
        self._batches: dict[tuple[str, str | None, bytes], list[bytes]] = {}
        self.stalled_all = False
        #: Fault schema_change: channel → "add" or "rename", applied to the snapshots sent.
        self.schema_changes: dict[str, str] = {}
        self.stalled_channels: frozenset[str] = frozenset()
        self.unstalled = asyncio.Event()
        self.unstalled.set()

    # ---- subscriptions ----
    def add(self, subscriber: Subscriber, channel: str, key: str | None, batched: bool) -> None:
        self.subs.setdefault((channel, key), {})[subscriber] = batched

    def remove(self, subscriber: Subscriber, channel: str, key: str | None) -> None:
        subscribers = self.subs.get((channel, key))
        if subscribers is not None:
            subscribers.pop(subscriber, None)
            if not subscribers:
                del self.subs[(channel, key)]

    def counts(self) -> dict[str, int]:
        counts: defaultdict[str, int] = defaultdict(int)
        for (channel, _), subscribers in self.subs.items():
            counts[channel] += len(subscribers)
        return dict(counts)

    def set_stall(self, everything: bool, channels: frozenset[str]) -> None:
        self.stalled_all = everything
        self.stalled_channels = channels
        if everything:
            self.unstalled.clear()
        else:
            self.unstalled.set()

    # ---- Publisher ----
    def _head(self, channel: str, key: str | None) -> bytes:
        head = self._heads.get((channel, key))
        if head is None:
            head = self._heads[(channel, key)] = encode.data_head(channel, key, ch.VERSIONS[channel])
        return head

    def publish(self, channel: str, key: str | None, contents: Any, extra: bytes = b"") -> None:
        stats = self._stats
        stats.updates[channel] += 1
        if channel == ch.TRADES:
            stats.trades[key or ""] += len(contents["trades"])
        subscribers = self.subs.get((channel, key))
        if not subscribers or self.stalled_all or channel in self.stalled_channels:
            return
        payload = orjson.dumps(contents)
        body = None
        buffered = False
        delivered = 0
        for subscriber, batched in subscribers.items():
            if batched:
                if not buffered:
                    self._batches.setdefault((channel, key, extra), []).append(payload)
                    self.ledger.buffered(channel, key, extra, contents)
                    buffered = True
                continue
            if body is None:
                body = encode.data_body(self._head(channel, key), payload, extra)
            subscriber.send_data(body)
            delivered += 1
        if delivered:
            stats.frames[(channel, ch.T_CHANNEL_DATA)] += delivered
            self.ledger.delivered(channel, key, contents, delivered)

    def flush(self) -> None:
        """The 250 ms batch timer: one channel_batch_data per buffered (channel, id, subaccountNumber)."""
        if not self._batches:
            return
        batches, self._batches = self._batches, {}
        for (channel, key, extra), items in batches.items():
            subscribers = self.subs.get((channel, key))
            if not subscribers:
                self.ledger.flushed(channel, key, extra, 0)
                continue
            body = encode.data_body(self._head(channel, key), encode.batch_contents(items), extra)
            delivered = 0
            for subscriber, batched in subscribers.items():
                if batched:
                    subscriber.send_batch(body)
                    delivered += 1
            self._stats.frames[(channel, ch.T_CHANNEL_BATCH_DATA)] += delivered
            self.ledger.flushed(channel, key, extra, delivered)
