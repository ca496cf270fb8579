"""One client WebSocket connection, behaving as a socks connection does.

message_id: per connection, 0 on `connected`, incremented synchronously for each valid subscribe (the
reserved id is carried later by its `subscribed` or error frame), each unsubscribe and each data frame;
validation errors reuse the current id; JSON ping changes nothing. Snapshots are "fetched" after a delay,
and updates published meanwhile are not delivered to the new subscription. Outbound frames go through a
bounded queue drained by one writer task; a client that does not read is cut off when it overflows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from exporter.lifecycle import cancel_and_wait
from exporter.logs import get_logger
from exporter.protocol import channels as ch
from exporter.protocol import encode
from exporter.simulator.faults.quality import changed_schema
from exporter.simulator.hub import Hub
from exporter.simulator.penalty import AbuseCounter
from exporter.simulator.source import EventSource
from exporter.simulator.truth import NO_CHANNEL, Stats

_MISSING = object()
_SUBSCRIBE = "subscribe"
_UNSUBSCRIBE = "unsubscribe"
_PING = "ping"
_MAX_WINDOWS = 1024


@dataclass(frozen=True, slots=True)
class SessionLimits:
    ping_interval: float = ch.SERVER_PING_INTERVAL_S
    pong_timeout: float = ch.SERVER_PONG_TIMEOUT_S
    snapshot_delay: float = 0.01
    send_buffer_bytes: int = 8 * 1024 * 1024
    close_timeout: float = 2.0
    #: Later socks' subscription-limit abuse rule (SUBSCRIPTION_LIMIT_ABUSE_DROP_ENABLED): more than
    #: ch.ABUSE_HITS cap hits in ch.ABUSE_WINDOW_S drop the connection with 4008.
    abuse_drop: bool = False


#: () → (extra snapshot delay in seconds, whether snapshot fetches fail) from the REST faults in force.
SnapshotConditions = Callable[[], tuple[float, bool]]


@dataclass(slots=True)
class _Window:
    """A fixed rate-limit window: more than `limit` events within `seconds` of the first one trips it."""

    start: float = 0.0
    count: int = 0

    def hit(self, now: float, limit: int, seconds: float) -> bool:
        if now - self.start >= seconds:
            self.start, self.count = now, 0
        self.count += 1
        return self.count > limit


@dataclass(frozen=True, slots=True)
class SessionDeps:
    """What the server gives every connection: the same collaborators for all of them, built once."""

    hub: Hub
    source: EventSource
    stats: Stats
    limits: SessionLimits
    snapshot_conditions: SnapshotConditions
    #: Whether socks already knows the subscription (a market listed over REST may reach it later).
    known_to_socks: Callable[[str, str | None], bool]
    #: A new subscription's snapshot was just queued: the faults in force may act on it.
    after_snapshot: Callable[[str, str | None], None]


class Session:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        deps: SessionDeps,
        *,
        silent: bool = False,
        penalize: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self.ws = ws
        self._request = request
        self._deps = deps
        self.silent = silent
        self._penalize = penalize  # refuses this client's address upgrades for that many seconds
        self._send_buffer_bytes = deps.limits.send_buffer_bytes  # read for every frame queued
        self._abuse = AbuseCounter() if deps.limits.abuse_drop else None
        self._destroy_at: asyncio.TimerHandle | None = None
        self.connection_id = str(uuid.uuid4())
        self.opened_at = time.monotonic()
        self._prefix = encode.data_prefix(self.connection_id)
        self._batch_prefix = encode.data_prefix(self.connection_id, batched=True)
        self._mid = 0
        self._queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self.closing = False
        self._close_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # (channel, key) → True once active, False while the snapshot is being fetched.
        self._subs: dict[tuple[str, str | None], bool] = {}
        self._per_channel: dict[str, int] = dict.fromkeys(ch.ALL_CHANNELS, 0)
        self._subscribe_windows: dict[tuple[str, str | None], _Window] = {}
        self._invalid_window = _Window()
        self._pong_at = 0.0
        self.close_code: int | None = None
        self.log = get_logger(__name__).bind(connection_id=self.connection_id)

    # ---- lifecycle ----
    async def run(self) -> None:
        """Serve the connection until it closes. Never raises for client behaviour."""
        self._deps.stats.connections_opened += 1
        self.log.debug("ws_client_connected", peer=self._request.remote, silent=self.silent)
        if not self.silent:
            self._send_control(encode.connected(self.connection_id), NO_CHANNEL, ch.T_CONNECTED)
            self._spawn(self._write_loop())
            self._spawn(self._heartbeat())
        try:
            async for msg in self.ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    if not self.silent:
                        self._handle(msg.data)
                elif msg.type is WSMsgType.PING:
                    if not self.silent:
                        await self.ws.pong(msg.data)
                elif msg.type is WSMsgType.PONG:
                    self._pong_at = asyncio.get_running_loop().time()
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            self.log.debug("ws_client_receive_failed", error=str(exc))
        finally:
            self.closing = True
            if self._destroy_at is not None:
                self._destroy_at.cancel()
            if self._close_task is not None:
                await asyncio.shield(self._close_task)
            await self._cancel_tasks()
            for channel, key in list(self._subs):
                self._deps.hub.remove(self, channel, key)
            self._subs.clear()
            self._queue.clear()
            self.queued_bytes = 0
            code = self.close_code or self.ws.close_code or ch.CLOSE_ABNORMAL
            self._deps.stats.closes[str(code)] += 1
            self.log.debug("ws_client_closed", code=code)

    async def _cancel_tasks(self) -> None:
        await cancel_and_wait(*self._tasks)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def close_soon(self, code: int, reason: str = "", flush: bool = True) -> None:
        """Close with `code` after (if `flush`) the frames already queued have been written."""
        if self._close_task is None:
            self.close_code = code
            self._close_task = asyncio.get_running_loop().create_task(self._close(code, reason, flush))

    async def _close(self, code: int, reason: str, flush: bool) -> None:
        self.closing = True  # nothing new is queued; what is queued is still written when flushing
        if flush and self._queue and not self.silent:
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), self._deps.limits.close_timeout)
        try:
            await asyncio.wait_for(
                self.ws.close(code=code, message=reason.encode()), self._deps.limits.close_timeout
            )
        except (TimeoutError, ConnectionError, RuntimeError):
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection with no close frame (the client sees 1006)."""
        self.closing = True
        if self.close_code is None:
            self.close_code = ch.CLOSE_ABNORMAL
        transport = self._request.transport
        if transport is not None:
            transport.abort()

    def drop_for_abuse(self, channel: str, limit: int, retry_after: int, mid: int | None = None) -> None:
        """socks' subscription-limit abuse drop: the error, close 4008 with the JSON reason, the socket
        destroyed ch.ABUSE_DESTROY_AFTER_S later if the client ignores the close, and the address
        penalized for `retry_after` seconds."""
        if self.closing:
            return
        self.log.info("ws_client_dropped_for_abuse", channel=channel, retry_after=retry_after)
        self.send_error(ch.err_subscription_limit_abuse(channel, limit, retry_after), mid=mid)
        self.close_soon(ch.CLOSE_SUBSCRIPTION_LIMIT_ABUSE, ch.subscription_limit_abuse_reason(retry_after))
        loop = asyncio.get_running_loop()
        self._destroy_at = loop.call_later(ch.ABUSE_DESTROY_AFTER_S, self.abort)
        self._penalize(retry_after)

    # ---- sending ----
    def _enqueue(self, frame: bytes) -> None:
        if self.closing:
            return
        self._queue.append(frame)
        self.queued_bytes += len(frame)
        if self.queued_bytes > self._send_buffer_bytes:
            self._deps.stats.slow_consumers_cut += 1
            self.log.info("ws_slow_consumer_cut", queued_bytes=self.queued_bytes)
            self._queue.clear()
            self.queued_bytes = 0
            self.abort()
            return
        self._wake.set()

    def _send_control(self, frame: bytes, channel: str, frame_type: str) -> None:
        self._deps.stats.frames[(channel, frame_type)] += 1
        self._enqueue(frame)

    def send_data(self, body: bytes) -> None:
        if self.closing:
            return
        self._mid += 1
        self._enqueue(b"%s%d%s" % (self._prefix, self._mid, body))

    def send_batch(self, body: bytes) -> None:
        if self.closing:
            return
        self._mid += 1
        self._enqueue(b"%s%d%s" % (self._batch_prefix, self._mid, body))

    async def _write_loop(self) -> None:
        queue, ws, hub = self._queue, self.ws, self._deps.hub
        # permessage-deflate negotiated (its window bits) or 0. aiohttp compresses every frame of such a
        # connection (a per-send `compress` only adds compression), so frames under socks' threshold are
        # written with the writer's compression switched off for that one send.
        deflate = int(ws.compress)
        writer = ws._writer
        threshold = ch.WS_COMPRESSION_THRESHOLD_BYTES
        try:
            while True:
                if not queue:
                    self._drained.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if hub.stalled_all:
                    await hub.unstalled.wait()
                    continue
                frame = queue.popleft()
                self.queued_bytes -= len(frame)
                if deflate and len(frame) < threshold and writer is not None:
                    writer.compress = 0
                    try:
                        await ws.send_frame(frame, WSMsgType.TEXT)
                    finally:
                        writer.compress = deflate
                else:
                    await ws.send_frame(frame, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError) as exc:
            self.log.debug("ws_client_send_failed", error=str(exc))
            self.abort()

    async def _heartbeat(self) -> None:
        """A protocol ping every ping_interval; a ping unanswered within pong_timeout closes with 1011."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._deps.limits.ping_interval)
            if self._deps.hub.stalled_all:
                continue
            sent_at = loop.time()
            try:
                await self.ws.ping()
            except (ConnectionError, RuntimeError):
                return
            loop.call_later(self._deps.limits.pong_timeout, self._pong_deadline, sent_at)

    def _pong_deadline(self, sent_at: float) -> None:
        if self._pong_at < sent_at and not self.closing:
            self.log.info("ws_client_heartbeat_timeout")
            self.close_soon(ch.CLOSE_HEARTBEAT_TIMEOUT, ch.HEARTBEAT_TIMEOUT_REASON, flush=False)

    # ---- faults acting on this connection ----
    def skip_ids(self, count: int) -> None:
        self._mid += count

    def send_garbage(self, count: int) -> None:
        for n in range(count):
            if n % 2 == 0:
                frame = encode.connected(self.connection_id)[:-7]  # truncated JSON
            else:
                frame = b"<html>502 Bad Gateway</html>"
            self._send_control(frame, NO_CHANNEL, "malformed")

    def send_error(
        self, message: str, channel: str | None = None, key: str | None = None, mid: int | None = None
    ) -> None:
        frame = encode.error(self.connection_id, self._mid if mid is None else mid, message, channel, key)
        self._send_control(frame, channel or NO_CHANNEL, ch.T_ERROR)

    # ---- receiving ----
    def _handle(self, raw: str | bytes) -> None:
        try:
            self._on_message(raw)
        except Exception:  # a bug here must not kill the connection: socks answers "Internal error"
            self.log.exception("ws_client_message_failed")
            self.send_error(ch.ERR_INTERNAL)

    def _on_message(self, raw: str | bytes) -> None:
        if self.closing:
            return
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._invalid(ch.ERR_COULD_NOT_PARSE)
            return
        if msg is None:
            self._deps.stats.client_messages["error"] += 1
            self.send_error(ch.ERR_INTERNAL)
            return
        message_type = msg.get("type") if isinstance(msg, dict) else None
        if encode.js_falsy(message_type):
            self._invalid(ch.ERR_TYPE_REQUIRED)
            return
        if message_type == _PING:
            self._deps.stats.client_messages["ping"] += 1
            return
        if message_type not in (_SUBSCRIBE, _UNSUBSCRIBE):
            self._invalid(ch.err_invalid_type(encode.js_str(message_type)))
            return
        assert isinstance(msg, dict)
        channel = msg.get("channel")
        if encode.js_falsy(channel):
            self._reject(ch.ERR_CHANNEL_REQUIRED)
            return
        if channel not in ch.ALL_CHANNELS:
            self._reject(ch.err_invalid_channel(encode.js_str(channel)))
            return
        assert isinstance(channel, str)
        raw_id = msg.get("id", _MISSING)
        client_id = None if raw_id is _MISSING or encode.js_falsy(raw_id) else encode.js_str(raw_id)
        if channel in ch.CHANNELS_WITHOUT_ID:
            key = client_id or (ch.BLOCK_HEIGHT_ID if channel == ch.BLOCK_HEIGHT else None)
        elif isinstance(raw_id, str) and raw_id:
            key = raw_id
        else:
            self._reject(ch.err_invalid_id("undefined" if raw_id is _MISSING else encode.js_str(raw_id)))
            return
        if message_type == _SUBSCRIBE:
            self._deps.stats.client_messages["subscribe"] += 1
            self._subscribe(channel, key, not encode.js_falsy(msg.get("batched")))
        else:
            self._deps.stats.client_messages["unsubscribe"] += 1
            self._unsubscribe(channel, key, None if channel == ch.MARKETS else client_id)

    def _invalid(self, message: str) -> None:
        """Parse failure, missing or unknown type: counted against the invalid-message rate limit."""
        self._deps.stats.client_messages["invalid"] += 1
        if self._invalid_window.hit(time.monotonic(), ch.INVALID_MESSAGES_PER_WINDOW, ch.RATE_LIMIT_WINDOW_S):
            self.send_error(ch.ERR_TOO_MANY_INVALID)
            self.log.info("ws_client_rate_limited", limit="invalid_messages")
            self.close_soon(ch.CLOSE_RATE_LIMITED, ch.RATE_LIMITED_REASON)
            return
        self.send_error(message)

    def _reject(self, message: str) -> None:
        """Bad channel or id: an error with the current message id, not rate limited."""
        self._deps.stats.client_messages["error"] += 1
        self.send_error(message)

    def _subscribe(self, channel: str, key: str | None, batched: bool) -> None:
        self._mid += 1
        mid = self._mid
        shown = key if key is not None else "undefined"
        now = time.monotonic()
        window = self._subscribe_windows.get((channel, key))
        if window is None:
            if len(self._subscribe_windows) >= _MAX_WINDOWS:  # a flood of distinct ids: forget expired ones
                self._subscribe_windows = {
                    k: w for k, w in self._subscribe_windows.items() if now - w.start < ch.RATE_LIMIT_WINDOW_S
                }
            window = self._subscribe_windows[(channel, key)] = _Window()
        if window.hit(now, ch.SUBSCRIBE_ATTEMPTS_PER_WINDOW, ch.RATE_LIMIT_WINDOW_S):
            self.send_error(ch.err_too_many_subscribes(channel, shown), mid=mid)
            self.log.info("ws_client_rate_limited", limit="subscribe", channel=channel, id=key)
            self.close_soon(ch.CLOSE_RATE_LIMITED, ch.RATE_LIMITED_REASON)
            return
        if not self._deps.source.valid(channel, key) or not self._deps.known_to_socks(channel, key):
            self.send_error(ch.err_invalid_subscription_id(channel, shown), mid=mid)
            return
        if (channel, key) in self._subs:
            self.send_error(ch.err_already_subscribed(channel, shown), channel, key, mid=mid)
            return
        cap = ch.SUBSCRIPTION_CAPS[channel]
        if self._per_channel[channel] >= cap:
            if self._abuse is not None and self._abuse.hit(now):
                self.drop_for_abuse(channel, cap, ch.RECONNECT_PENALTY_S, mid=mid)
                return
            self.send_error(ch.err_subscription_limit(channel, cap), mid=mid)
            return
        self._subs[(channel, key)] = False
        self._per_channel[channel] += 1
        self._spawn(self._fetch_snapshot(channel, key, batched, mid))

    async def _fetch_snapshot(self, channel: str, key: str | None, batched: bool, mid: int) -> None:
        deps = self._deps
        extra_delay, failing = deps.snapshot_conditions()
        delay = deps.limits.snapshot_delay + extra_delay
        if delay > ch.SNAPSHOT_FETCH_TIMEOUT_S:
            await asyncio.sleep(ch.SNAPSHOT_FETCH_TIMEOUT_S)
            failing = True
        elif delay > 0:
            await asyncio.sleep(delay)
        pending = self._subs.get((channel, key)) is False
        if failing or not deps.source.valid(channel, key):
            if pending:
                self._forget(channel, key)
            self.send_error(ch.err_could_not_fetch(channel), channel, key, mid=mid)
            return
        contents = deps.source.snapshot(channel, key)
        if pending:
            self._subs[(channel, key)] = True
            deps.hub.add(self, channel, key, batched)
            deps.hub.ledger.snapshot(channel, key, contents)
        if deps.hub.schema_changes:
            contents = changed_schema(deps.hub.schema_changes.get(channel), contents)
        frame = encode.subscribed(self.connection_id, mid, channel, key, contents)
        self._send_control(frame, channel, ch.T_SUBSCRIBED)
        if pending:
            deps.after_snapshot(channel, key)

    def _forget(self, channel: str, key: str | None) -> None:
        if self._subs.pop((channel, key), None) is not None:
            self._per_channel[channel] -= 1
            self._deps.hub.remove(self, channel, key)

    def _unsubscribe(self, channel: str, key: str | None, client_id: str | None) -> None:
        self._mid += 1
        self._forget(channel, key)
        frame = encode.unsubscribed(self.connection_id, self._mid, channel, client_id)
        self._send_control(frame, channel, ch.T_UNSUBSCRIBED)
