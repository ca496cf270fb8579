"""One supervised WebSocket link to the indexer: connect, subscribe, heartbeat, backoff, close codes.

A `Link` keeps a table of the subscriptions the pool wants on it and keeps them active across reconnects.
The hot path (the reader) hands every data frame to `FrameSink.handle` and does nothing else; control
events (connected, subscribed, errors) drive the subscription table. A watchdog declares the link dead
when the server stops pinging, when no `connected` frame arrives, or when a channel with an expected rate
(block height, markets) goes silent; the link then reconnects with full-jitter exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from exporter import __version__
from exporter.config import FeedSettings
from exporter.feed.backoff import Backoff, Pacer
from exporter.feed.errors import classify_connect_error, describe, penalty_seconds
from exporter.feed.sink import (
    Connected,
    Control,
    FeedObserver,
    FrameSink,
    ServerError,
    Subscribed,
)
from exporter.logs import get_logger
from exporter.loop import let_io_in
from exporter.protocol import channels as ch
from exporter.protocol.control import subscribe_message, unsubscribe_message

log = get_logger(__name__)

#: (channel, id); id is None for the channels subscribed without one (markets, block height).
SubKey = tuple[str, str | None]

PENDING, ACTIVE, FAILED = "pending", "active", "failed"
SUB_STATES = (ACTIVE, PENDING, FAILED)
#: Minimum gap between two subscribes of one (channel, id) on one connection: the server closes the
#: connection on more than 2 attempts in a fixed 1 s window, and 0.6 s apart never puts 3 in one window.
SAME_KEY_MIN_GAP_S = 0.6
CLOSE_TIMEOUT_S = 1.0
#: Why the watchdog killed a link; each is a bounded `reason` of dydx_ws_connection_failures_total.
DEAD_LINK_REASONS = frozenset({"silent", "ping_timeout", "stale", "frame_too_large"})
# Errors that name their subscription only in the text (they carry no channel/id fields).
_LIMIT_RE = re.compile(r"limit reached for (\S+) \(")
_INVALID_ID_RE = re.compile(r"\((v4_[a-z_]+)-(.*)\)$")
USER_AGENT = f"dydx-exporter/{__version__}"
#: aiohttp hands over frames it already buffered without suspending (one 256 KiB socket read is ≈ 1,100
#: frames, ≈ 4 ms of work), so the read loop yields once it has held the loop this long: a scrape or a
#: timer waits at most about this much behind a burst. The clock is checked after every READ_CHECK_BYTES
#: of frames (≈ 35 small updates, or every snapshot), not per frame.
READ_SLICE_S = 0.001
READ_CHECK_BYTES = 8192


def sub_key(channel: str, sub_id: str | None) -> SubKey:
    return (channel, None if channel in ch.CHANNELS_WITHOUT_ID else sub_id)


class LinkEvents(Protocol):
    """What a link tells its pool."""

    def subscriptions_changed(self) -> None: ...

    def limit_reached(self, link: Link, key: SubKey) -> None: ...


@dataclass(slots=True)
class _Sub:
    key: SubKey
    state: str = PENDING
    sent_at: float | None = None  # monotonic time of the outstanding subscribe; None: not sent yet
    retry_at: float = 0.0  # monotonic time before which it is not (re)sent
    rejections: int = 0
    reason: str = ""
    active_since: float = 0.0  # wall-clock time the snapshot arrived
    backoff: Backoff | None = None
    #: Resubscribed on purpose for a fresh snapshot (`resync`): pending, but not a reason to be unready.
    refreshing: bool = False


class _LinkDead(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LinkDeps:
    """What every link of a pool is given: the same settings and collaborators for all of them."""

    settings: FeedSettings
    session: aiohttp.ClientSession
    sink: FrameSink
    observer: FeedObserver
    pacer: Pacer  # one for the pool: the subscribe rate limit is the server's, per client
    events: LinkEvents


class Link:
    """A supervised connection named `name` ("conn-N"), carrying the subscriptions the pool put on it."""

    def __init__(self, name: str, deps: LinkDeps) -> None:
        self.name = name
        self._deps = deps
        self._subs: dict[SubKey, _Sub] = {}
        self._unsubscribe_queue: list[SubKey] = []
        self._last_attempt: dict[SubKey, float] = {}
        self._backoff = Backoff(deps.settings.backoff_initial, deps.settings.backoff_max)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse[bool] | None = None
        self._stopping = False
        self._ready = False  # the server's `connected` frame arrived on the current socket
        self._ever_up = False
        self._opened_at = 0.0
        self._last_server_ping = 0.0
        self._ping_sent: dict[bytes, float] = {}
        self._ping_seq = 0
        self._down_reason = "not connected yet"
        self._retry_at: float | None = None
        self.connection_id: str | None = None
        self.connects = 0

    # --- the pool's side -----------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._ready

    @property
    def keys(self) -> frozenset[SubKey]:
        return frozenset(self._subs)

    def count(self, channel: str) -> int:
        return sum(1 for key in self._subs if key[0] == channel)

    def state_of(self, key: SubKey) -> str | None:
        sub = self._subs.get(key)
        return sub.state if sub else None

    def want(self, keys: Iterable[SubKey]) -> None:
        added = False
        for key in keys:
            if key not in self._subs:
                self._subs[key] = _Sub(key)
                added = True
        if added:
            self._wake.set()

    def unwant(self, keys: Iterable[SubKey]) -> None:
        for key in keys:
            sub = self._subs.pop(key, None)
            # One still in flight is unsubscribed when its `subscribed` frame arrives (the server registers
            # it only after the snapshot fetch, so an unsubscribe sent now would miss it).
            if sub is not None and self._ready and sub.state == ACTIVE:
                self._unsubscribe_queue.append(key)
        self._wake.set()

    def resync(self, key: SubKey) -> bool:
        """Unsubscribe and subscribe `key` again for a fresh snapshot. False (nothing done) unless it is
        active on a connected link."""
        sub = self._subs.get(key)
        if sub is None or sub.state != ACTIVE or not self._ready:
            return False
        self._unsubscribe_queue.append(key)
        sub.state, sub.sent_at, sub.retry_at, sub.refreshing = PENDING, None, 0.0, True
        self._wake.set()
        self._deps.events.subscriptions_changed()
        return True

    def retry_given_up(self) -> None:
        """Discovery refreshed: markets given up on get another round of attempts."""
        for sub in self._subs.values():
            if sub.state == FAILED:
                sub.state, sub.sent_at, sub.retry_at, sub.rejections = PENDING, None, 0.0, 0
        self._wake.set()

    def counts(self) -> Counter[tuple[str, str]]:
        return Counter((key[0], sub.state) for key, sub in self._subs.items())

    def not_ready_reasons(self) -> list[str]:
        if not self._ready:
            retry = ""
            if self._retry_at is not None:
                retry = f", retrying in {max(0.0, self._retry_at - time.monotonic()):.1f}s"
            return [f"{self.name}: not connected ({self._down_reason}{retry})"]
        pending = sorted(
            f"{c}:{i}" if i else c
            for (c, i), s in self._subs.items()
            if s.state == PENDING and not s.refreshing
        )
        if pending:
            shown = ", ".join(pending[:5]) + (" ..." if len(pending) > 5 else "")
            return [f"{self.name}: {len(pending)} subscription(s) pending ({shown})"]
        return []

    # --- lifecycle -----------------------------------------------------------------------------------

    def launch(self) -> None:
        """Start the supervisor (synchronous so the pool can add links from a control callback)."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._supervise(), name=f"link-{self.name}")

    async def start(self) -> None:
        self.launch()

    async def stop(self) -> None:
        """Unsubscribe what is active, close the socket with 1000 and end the supervisor."""
        self._stopping = True
        try:
            async with asyncio.timeout(2 * CLOSE_TIMEOUT_S):
                await self._say_goodbye()
        except Exception as exc:  # shutting down: a peer that does not listen must not hold us up
            log.info("ws_close_incomplete", link=self.name, error=repr(exc)[:200])
        finally:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                self._task = None

    async def _say_goodbye(self) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            return
        if self._ready:
            for key, sub in list(self._subs.items()):
                if sub.state == ACTIVE:
                    await ws.send_str(unsubscribe_message(*key))
        await ws.close(code=aiohttp.WSCloseCode.OK)

    # --- supervision ---------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        s = self._deps.settings
        while not self._stopping:
            retry_after = 0.0
            try:
                async with asyncio.timeout(s.handshake_timeout):
                    ws = await self._deps.session.ws_connect(
                        s.ws_url,
                        autoping=False,
                        autoclose=True,
                        # The sink counts frames over max_frame_bytes as invalid and carries on; only
                        # beyond twice that does the socket refuse them (closing the link, counted).
                        max_msg_size=2 * s.max_frame_bytes,
                        decode_text=False,
                        timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT_S),
                        headers={"User-Agent": USER_AGENT},
                        # permessage-deflate offered (window bits 15) or not; the server decides.
                        compress=15 if s.compression else 0,
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason, retry_after = classify_connect_error(exc)
                self._deps.observer.connection_failed(reason)
                self._down_reason = f"connect failed: {reason}"
                delay = self._backoff.next_delay(retry_after)
                log.warning(
                    "ws_connect_failed",
                    link=self.name,
                    url=s.ws_url,
                    reason=reason,
                    error=describe(exc),
                    retry_in=round(delay, 3),
                )
                await self._sleep_before_retry(delay)
                continue
            penalty = await self._run_socket(ws)
            if not self._stopping:
                await self._sleep_before_retry(self._backoff.next_delay(penalty))

    async def _sleep_before_retry(self, delay: float) -> None:
        self._retry_at = time.monotonic() + delay
        try:
            await asyncio.sleep(delay)
        finally:
            self._retry_at = None

    async def _run_socket(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> float:
        """Serve one socket until it ends; returns the seconds to wait at least before the next connect
        (a 4008's penalty, else 0)."""
        deps = self._deps
        self._ws = ws
        self.connects += 1
        self._opened_at = self._last_server_ping = time.monotonic()
        self._ping_sent.clear()
        self._last_attempt.clear()
        self._unsubscribe_queue.clear()
        for sub in self._subs.values():
            sub.state, sub.sent_at, sub.retry_at, sub.refreshing = PENDING, None, 0.0, False
        deps.sink.link_opened(self.name)
        deps.observer.link_up(self.name, True)
        if self._ever_up:
            deps.observer.reconnected()
        self._ever_up = True
        deps.events.subscriptions_changed()
        log.info("ws_connected", link=self.name, url=deps.settings.ws_url, attempt=self._backoff.attempt)

        code: int | None = None
        close_reason = ""
        dead_reason: str | None = None
        tasks = [
            asyncio.create_task(self._read(ws), name=f"{self.name}-read"),
            asyncio.create_task(self._write(ws), name=f"{self.name}-write"),
            asyncio.create_task(self._watch(ws), name=f"{self.name}-watch"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if isinstance(exc, _LinkDead):
                    dead_reason = exc.reason
                elif exc is not None:
                    dead_reason = "error"
                    log.error("ws_link_error", link=self.name, error=repr(exc)[:300])
                elif task is tasks[0]:
                    code, close_reason = task.result()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not self._stopping and not ws.closed:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(CLOSE_TIMEOUT_S):
                        await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)
            uptime = time.monotonic() - self._opened_at
            was_ready = self._ready
            self._ws = None
            self._ready = False
            self.connection_id = None
            deps.sink.link_closed(self.name)
            deps.observer.link_up(self.name, False)
            for sub in self._subs.values():
                if sub.state == ACTIVE:
                    sub.state = PENDING
                sub.sent_at = None
            deps.events.subscriptions_changed()
        if self._stopping:
            return 0.0
        if was_ready and uptime >= deps.settings.stable_after:
            self._backoff.reset()
        if dead_reason is not None:
            deps.observer.connection_failed(dead_reason if dead_reason in DEAD_LINK_REASONS else "other")
            self._down_reason = f"link dead: {dead_reason}"
            log.warning("ws_link_dead", link=self.name, reason=dead_reason, uptime=round(uptime, 3))
            return 0.0
        deps.observer.link_disconnected(self.name, code or ch.CLOSE_ABNORMAL)
        if code == ch.CLOSE_SUBSCRIPTION_LIMIT_ABUSE:
            # Reconnecting sooner is refused (429) and keeps the address penalized; a tenth more spreads
            # the links dropped together over a window instead of one instant.
            penalty = penalty_seconds(close_reason) * random.uniform(1.0, 1.1)
            self._down_reason = f"disconnected: {code} (subscription-limit abuse, {penalty:.0f}s penalty)"
            log.error(
                "ws_penalized",
                link=self.name,
                code=code,
                reason=close_reason[:200],
                retry_in=round(penalty, 3),
                uptime=round(uptime, 3),
            )
            return penalty
        self._down_reason = f"disconnected: {code or ch.CLOSE_ABNORMAL}"
        log.warning(
            "ws_disconnected",
            link=self.name,
            code=code or ch.CLOSE_ABNORMAL,
            reason=close_reason[:200],
            uptime=round(uptime, 3),
        )
        return 0.0

    # --- the three tasks of a socket -----------------------------------------------------------------

    async def _read(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> tuple[int, str]:
        """The hot path. Returns (close code, reason) when the socket ends; 1006 without a close frame."""
        name = self.name
        handle = self._deps.sink.handle
        receive = ws.receive
        text, binary = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY
        clock = time.time
        slice_start = clock()
        unchecked = READ_CHECK_BYTES
        while True:
            msg = await receive()
            kind = msg.type
            if kind is text or kind is binary:
                data = msg.data
                control = handle(name, data, clock())
                if control is not None:
                    self._on_control(control)
                unchecked -= len(data)
                if unchecked <= 0:
                    unchecked = READ_CHECK_BYTES
                    # After an idle wait this yields once needlessly: ≈ 10 µs per READ_CHECK_BYTES received.
                    if clock() - slice_start > READ_SLICE_S:
                        await let_io_in()
                        slice_start = clock()
            elif kind is aiohttp.WSMsgType.PING:
                self._last_server_ping = time.monotonic()
                await ws.pong(msg.data)
            elif kind is aiohttp.WSMsgType.PONG:
                sent = self._ping_sent.pop(bytes(msg.data), None)
                if sent is not None:
                    self._deps.observer.ping_rtt(time.monotonic() - sent)
            elif kind is aiohttp.WSMsgType.CLOSE:
                return int(msg.data), str(msg.extra or "")
            elif kind is aiohttp.WSMsgType.ERROR:
                error = msg.data
                if isinstance(error, aiohttp.WebSocketError) and error.code == 1009:
                    raise _LinkDead("frame_too_large")
                return ch.CLOSE_ABNORMAL, repr(error)[:200]
            else:  # CLOSING / CLOSED without a close frame from the server: a drop
                return ch.CLOSE_ABNORMAL, ""

    async def _write(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        """Sends subscribes (paced globally and per key) and unsubscribes as the table asks."""
        batched = self._deps.settings.batched
        while True:
            while self._unsubscribe_queue:
                await ws.send_str(unsubscribe_message(*self._unsubscribe_queue.pop(0)))
            next_due: float | None = None
            if self._ready:
                now = time.monotonic()
                for key, sub in list(self._subs.items()):
                    # A resync queued meanwhile: its unsubscribe must reach the server first.
                    if sub.state != PENDING or sub.sent_at is not None or key in self._unsubscribe_queue:
                        continue
                    due = max(sub.retry_at, self._last_attempt.get(key, -1e9) + SAME_KEY_MIN_GAP_S)
                    if due > now:
                        next_due = due if next_due is None else min(next_due, due)
                        continue
                    await self._deps.pacer.acquire()
                    if (
                        self._subs.get(key) is not sub
                        or sub.sent_at is not None
                        or ws.closed
                        or key in self._unsubscribe_queue
                    ):
                        continue
                    now = time.monotonic()
                    sub.sent_at = now
                    self._last_attempt[key] = now
                    await ws.send_str(subscribe_message(*key, batched=batched))
            self._wake.clear()
            if self._unsubscribe_queue:
                continue
            timeout = None if next_due is None else max(0.0, next_due - time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _watch(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        """Heartbeat, dead-link detection, own pings for the RTT, subscribe timeouts."""
        s = self._deps.settings
        tick = max(0.05, min(1.0, s.ping_timeout / 4, s.silence_timeout / 4, s.ping_interval))
        next_ping = time.monotonic() + s.ping_interval
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if not self._ready:
                if now - self._opened_at > s.handshake_timeout:
                    raise _LinkDead("silent")
                continue
            if now - self._last_server_ping > s.ping_timeout:
                raise _LinkDead("ping_timeout")
            wall = time.time()
            for channel in ch.RATED_CHANNELS:
                sub = self._subs.get((channel, None))
                if sub is None or sub.state != ACTIVE:
                    continue
                last = max(self._deps.sink.last_data_at(self.name, channel) or 0.0, sub.active_since)
                if wall - last > s.silence_timeout:
                    raise _LinkDead("stale")
            if now >= next_ping:
                next_ping = now + s.ping_interval
                self._ping_seq += 1
                payload = self._ping_seq.to_bytes(8, "big")
                self._ping_sent = {k: v for k, v in self._ping_sent.items() if now - v < s.ping_timeout}
                self._ping_sent[payload] = now
                await ws.ping(payload)
            timed_out = [
                sub
                for sub in self._subs.values()
                if sub.state == PENDING
                and sub.sent_at is not None
                and now - sub.sent_at > s.subscribe_timeout
            ]
            for sub in timed_out:
                self._deps.observer.subscription_failed(sub.key[0], "timeout")
                self._retry(sub, "timeout", delay=0.0)
            if timed_out:
                self._deps.events.subscriptions_changed()

    # --- control events ------------------------------------------------------------------------------

    def _on_control(self, control: Control) -> None:
        if isinstance(control, Subscribed):
            key = sub_key(control.channel, control.sub_id)
            sub = self._subs.get(key)
            if sub is None:
                # Unwanted while its subscribe was in flight: the server holds it now, so drop it there.
                self._unsubscribe_queue.append(key)
                self._wake.set()
            else:
                sub.state, sub.sent_at, sub.rejections, sub.reason = ACTIVE, None, 0, ""
                sub.refreshing = False
                sub.active_since = time.time()
                self._deps.events.subscriptions_changed()
        elif isinstance(control, ServerError):
            self._on_error(control)
        elif isinstance(control, Connected):
            self._ready = True
            self.connection_id = control.connection_id
            self._down_reason = ""
            self._wake.set()

    def _on_error(self, error: ServerError) -> None:
        channel, sub_id = error.channel, error.sub_id
        if channel is None and error.reason == "subscription_limit":
            m = _LIMIT_RE.search(error.message)
            channel = m.group(1) if m else None
        elif channel is None and error.reason == "invalid_subscription_id":
            m = _INVALID_ID_RE.search(error.message)
            channel, sub_id = (m.group(1), m.group(2)) if m else (None, None)
        if channel is None:
            return  # not about a subscription; the pipeline counts it in dydx_ws_errors_total
        sub = self._find_sub(channel, sub_id)
        if sub is None:
            return
        reason = error.reason
        if reason == "already_subscribed":
            sub.state, sub.sent_at, sub.refreshing = ACTIVE, None, False
            sub.active_since = time.time()
            self._deps.events.subscriptions_changed()
            return
        self._deps.observer.subscription_failed(channel, reason)
        s = self._deps.settings
        if reason == "snapshot_fetch_failed":
            self._retry(sub, reason, delay=s.resubscribe_delay)
        elif reason == "invalid_subscription_id":
            sub.rejections += 1
            if sub.rejections >= s.subscribe_retries:
                self._give_up(sub, reason)
            else:
                if sub.backoff is None:
                    sub.backoff = Backoff(max(s.resubscribe_delay, s.backoff_initial), s.backoff_max)
                self._retry(sub, reason, delay=sub.backoff.next_delay(s.resubscribe_delay))
        elif reason == "subscription_limit":
            self._give_up(sub, reason)
            self._deps.events.limit_reached(self, sub.key)
        elif reason == "subscribe_rate_limited":
            self._retry(sub, reason, delay=1.0)  # the server closes the link with 1008 anyway
        else:
            self._give_up(sub, reason)
        self._deps.events.subscriptions_changed()

    def _find_sub(self, channel: str, sub_id: str | None) -> _Sub | None:
        sub = self._subs.get(sub_key(channel, sub_id))
        if sub is not None or sub_id is not None:
            return sub
        # An error without an id (the per-connection limit): blame the newest outstanding subscribe.
        outstanding = [s for k, s in self._subs.items() if k[0] == channel and s.sent_at is not None]
        return max(outstanding, key=lambda s: s.sent_at or 0.0, default=None)

    def _retry(self, sub: _Sub, reason: str, *, delay: float) -> None:
        sub.state, sub.sent_at, sub.reason, sub.refreshing = PENDING, None, reason, False
        sub.retry_at = time.monotonic() + delay
        log.warning("subscribe_failed", link=self.name, channel=sub.key[0], id=sub.key[1], reason=reason)
        self._wake.set()

    def _give_up(self, sub: _Sub, reason: str) -> None:
        sub.state, sub.sent_at, sub.reason, sub.refreshing = FAILED, None, reason, False
        log.warning("subscribe_given_up", link=self.name, channel=sub.key[0], id=sub.key[1], reason=reason)
