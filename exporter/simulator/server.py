"""The simulator: one aiohttp server on one address with the WebSocket (/v4/ws), the REST subset (/v4/),
ground truth (/metrics) and the control API (/control/), driving an EventSource on an absolute schedule.

    sim = Simulator(SimulatorConfig(port=0, seed=1, markets=5, block_time=0.2))
    await sim.start()          # sim.ws_url, sim.base_url
    ...
    await sim.stop()           # clients get 1012
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from exporter.lifecycle import cancel_and_wait
from exporter.logs import get_logger
from exporter.protocol import channels as ch
from exporter.simulator import rest
from exporter.simulator.catalog import DEFAULT_MARKET_COUNT
from exporter.simulator.chain import MAINNET, Chain, ChainRpc
from exporter.simulator.control import ControlApi
from exporter.simulator.faults import Fault, FaultKind, Faults
from exporter.simulator.faults.base import as_dict
from exporter.simulator.faults.connection import REJECT, SILENT
from exporter.simulator.faults.feed import LAG
from exporter.simulator.faults.rest import REST_ERROR, REST_SLOW
from exporter.simulator.hub import Hub
from exporter.simulator.market import MarketConfig, MarketModel
from exporter.simulator.penalty import PenaltyBox, client_address
from exporter.simulator.session import Session, SessionDeps, SessionLimits
from exporter.simulator.source import EventSource, Publisher
from exporter.simulator.truth import Live, Stats, build_registry

log = get_logger(__name__)
SourceFactory = Callable[[Publisher], EventSource]

WS_PATH = "/v4/ws"


@dataclass(frozen=True)
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 3003
    seed: int = 1
    #: A count (real tickers first, then synthetic ones) or an explicit list of tickers.
    markets: int | Sequence[str] = DEFAULT_MARKET_COUNT
    block_time: float = 1.0
    #: Multiplies market activity; 1.0 is ~400 orderbook updates/s and ~25 trades/s over all markets.
    rate: float = 1.0
    paused: bool = False
    ping_interval: float = ch.SERVER_PING_INTERVAL_S
    pong_timeout: float = ch.SERVER_PONG_TIMEOUT_S
    #: How long the "comlink fetch" of a subscription's snapshot takes.
    snapshot_delay: float = 0.01
    batch_interval: float = ch.BATCH_SEND_INTERVAL_S
    trading_interval: float = ch.TRADING_DIFF_INTERVAL_S
    subaccounts: int = 1
    #: A connection whose unsent frames exceed this is cut off (slow consumer).
    send_buffer_bytes: int = 8 * 1024 * 1024
    #: A larger client frame is closed with 1009 (later socks' WS_MAX_PAYLOAD_BYTES).
    max_message_bytes: int = ch.WS_MAX_PAYLOAD_BYTES
    #: Later socks' subscription-limit abuse rule: drop with 4008, then refuse the address with 429.
    subscription_limit_abuse: bool = False
    #: The edge blocks an address for 300 s after 5 penalty refusals (429) of it in 60 s.
    edge_block: bool = False
    #: permessage-deflate for this share (0-100) of the connections that offer it, drawn per connection.
    compression_percent: float = 0.0
    close_timeout: float = 2.0
    allow_remote_control: bool = False
    #: comlink's REST rate limit, requests per 10 s per client IP (the source default is 100); 0 = off.
    rest_rate_limit: int = 0
    #: The chain's CometBFT RPC (/status, /block) listens here; None = not served (0: any free port).
    chain_rpc_port: int | None = None
    chain_rpc_host: str = "127.0.0.1"
    #: The chain's network (CometBFT chain id) its RPC reports.
    network: str = MAINNET

    def __post_init__(self) -> None:
        checks = [
            (self.block_time > 0, f"block_time must be > 0, not {self.block_time}"),
            (self.rate >= 0, f"rate must be >= 0, not {self.rate}"),
            (self.ping_interval > 0, f"ping_interval must be > 0, not {self.ping_interval}"),
            (self.pong_timeout > 0, f"pong_timeout must be > 0, not {self.pong_timeout}"),
            (self.snapshot_delay >= 0, f"snapshot_delay must be >= 0, not {self.snapshot_delay}"),
            (self.batch_interval > 0, f"batch_interval must be > 0, not {self.batch_interval}"),
            (self.trading_interval > 0, f"trading_interval must be > 0, not {self.trading_interval}"),
            (self.subaccounts >= 0, f"subaccounts must be >= 0, not {self.subaccounts}"),
            (self.send_buffer_bytes > 0, f"send_buffer_bytes must be > 0, not {self.send_buffer_bytes}"),
            (self.rest_rate_limit >= 0, f"rest_rate_limit must be >= 0, not {self.rest_rate_limit}"),
            (
                0 <= self.compression_percent <= 100,
                f"compression_percent must be 0-100, not {self.compression_percent}",
            ),
            (0 <= self.port <= 65535, f"port must be 0-65535, not {self.port}"),
            (
                self.chain_rpc_port is None or 0 <= self.chain_rpc_port <= 65535,
                f"chain_rpc_port must be 0-65535, not {self.chain_rpc_port}",
            ),
        ]
        if isinstance(self.markets, int):
            checks.append((self.markets >= 1, f"markets must be >= 1, not {self.markets}"))
        else:
            checks.append((len(self.markets) >= 1, "markets must name at least one ticker"))
            bad = [t for t in self.markets if not ch.TICKER_RE.match(t)]
            checks.append((not bad, f"invalid ticker(s) in markets: {', '.join(bad)}"))
            twice = sorted({t for t in self.markets if list(self.markets).count(t) > 1})
            checks.append((not twice, f"ticker(s) listed twice in markets: {', '.join(twice)}"))
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def synthetic_market(config: SimulatorConfig) -> SourceFactory:
    """The default event source: the seeded synthetic market described by `config`."""
    markets = config.markets if isinstance(config.markets, int) else tuple(config.markets)
    market_config = MarketConfig(
        seed=config.seed,
        markets=markets,
        block_time=config.block_time,
        rate=config.rate,
        trading_interval=config.trading_interval,
        subaccounts=config.subaccounts,
    )
    return lambda publisher: MarketModel(market_config, publisher)


class Simulator:
    """`source_factory` builds the EventSource from the server's Publisher; by default the synthetic market
    of `config` (a replayed capture is the other source)."""

    def __init__(self, config: SimulatorConfig, source_factory: SourceFactory | None = None) -> None:
        self.config = config
        self.stats = Stats()
        self.hub = Hub(self.stats)
        # The source makes the chain's blocks; clients see them through the indexer that follows it.
        self.chain = Chain(self.hub, config.network, config.block_time)
        self.source: EventSource = (source_factory or synthetic_market(config))(self.chain.feed)
        self._indexer_view = self.chain.attach(self.source, self.hub)
        self._chain_rpc = (
            ChainRpc(self.chain, config.chain_rpc_host, config.chain_rpc_port)
            if config.chain_rpc_port is not None
            else None
        )
        self.faults = Faults()
        self.limits = SessionLimits(
            ping_interval=config.ping_interval,
            pong_timeout=config.pong_timeout,
            snapshot_delay=config.snapshot_delay,
            send_buffer_bytes=config.send_buffer_bytes,
            close_timeout=config.close_timeout,
            abuse_drop=config.subscription_limit_abuse,
        )
        self._session_deps = SessionDeps(
            self.hub,
            self._indexer_view,
            self.stats,
            self.limits,
            self._snapshot_conditions,
            self._known_to_socks,
            self._after_snapshot,
        )
        self.penalties = PenaltyBox(edge_block=config.edge_block)
        self._compression_draw = random.Random(config.seed)
        self.sessions: set[Session] = set()
        self._no_sessions = asyncio.Event()
        self._no_sessions.set()
        self._paused = config.paused
        self._resumed = asyncio.Event()
        if not self._paused:
            self._resumed.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._hidden_until: dict[str, float] = {}
        self._stopping = False
        self._rest_limiter = rest.RateLimiter(config.rest_rate_limit) if config.rest_rate_limit else None
        self.registry = build_registry(
            self.stats,
            Live(
                connections=lambda: len(self.sessions),
                subscriptions=self.hub.counts,
                block_height=lambda: self.source.height()[0],
                markets=lambda: len(self.source.tickers()),
                paused=lambda: self._paused,
                faults=self.faults.counts,
                queued_bytes=lambda: sum(s.queued_bytes for s in self.sessions),
            ),
        )

    # ---- addresses ----
    @property
    def base_url(self) -> str:
        return f"http://{self._url_host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._url_host}:{self.port}{WS_PATH}"

    @property
    def chain_rpc_url(self) -> str:
        """Base URL of the chain's CometBFT RPC (started with a `chain_rpc_port`)."""
        if self._chain_rpc is None:
            raise RuntimeError("the chain RPC is not served (SimulatorConfig.chain_rpc_port is None)")
        return self._chain_rpc.url

    @property
    def _url_host(self) -> str:
        host = self.config.host or "127.0.0.1"
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"[{host}]" if ":" in host else host

    # ---- lifecycle ----
    async def start(self) -> None:
        control = ControlApi(self, self.config.allow_remote_control)
        app = web.Application(middlewares=[control.guard, self._rest_middleware])
        app.router.add_get(WS_PATH, self._ws_handler)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_routes(rest.RestApi(lambda: self._indexer_view).routes())
        app.router.add_routes(control.routes())
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.config.close_timeout)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        if self._chain_rpc is not None:
            await self._chain_rpc.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._drive()),
            loop.create_task(self._flush_batches()),
            loop.create_task(self._housekeeping()),
            loop.create_task(self.chain.run()),
        ]
        log.info(
            "simulator_started",
            url=self.ws_url,
            markets=len(self.source.tickers()),
            block_time=self.config.block_time,
            rate=self.config.rate,
            paused=self._paused,
        )

    async def stop(self) -> None:
        self._stopping = True
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(*tasks)
        for session in list(self.sessions):
            session.close_soon(ch.CLOSE_SERVICE_RESTARTING, ch.SERVICE_RESTARTING_REASON, flush=False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_sessions.wait(), self.config.close_timeout + 1.0)
        for session in list(self.sessions):
            session.abort()
        if self._chain_rpc is not None:
            await self._chain_rpc.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("simulator_stopped")

    # ---- market clock ----
    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        self._paused = True
        self._resumed.clear()

    def resume(self) -> None:
        self._paused = False
        self._resumed.set()

    def lag_seconds(self) -> float:
        lag = self.faults.latest(LAG.name)
        return float(lag.seconds) if lag else 0.0

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.source.tick_interval
        next_at = loop.time()
        while True:
            if not self._resumed.is_set():
                await self._resumed.wait()
                next_at = loop.time()
                continue
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                continue  # look at the pause flag again before producing
            self._indexer_view.advance(time.time() - self.lag_seconds())
            next_at += interval
            if loop.time() - next_at > 1.0:
                next_at = loop.time()  # fell far behind (overload): skip, never burst to catch up

    async def _flush_batches(self) -> None:
        while True:
            await asyncio.sleep(self.config.batch_interval)
            self.hub.flush()

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            ended = self.faults.expire()
            if ended:
                self._faults_ended(ended)

    # ---- faults (faults.FaultTarget) ----
    def open_sessions(self) -> list[Session]:
        return [s for s in self.sessions if not s.closing]

    def active_params(self, kind: str) -> list[Any]:
        return self.faults.params(kind)

    def apply_fault(self, kind: FaultKind[Any], params: Any) -> dict[str, Any]:
        """Apply validated parameters (see faults.parse). Raises FaultError if the kind refuses them (a
        market that is not listed, ...)."""
        fields = as_dict(params)
        if kind.length is None:
            connections = len(self.open_sessions())
            if kind.start is not None:
                kind.start(self, params)
            log.info("simulator_fault_applied", kind=kind.name, connections=connections, **fields)
            return {"kind": kind.name, "connections": connections}
        fault = self.faults.add(kind, params)
        if kind.start is not None:
            try:
                kind.start(self, params)
            except BaseException:
                self.faults.discard(fault)
                raise
        log.info("simulator_fault_started", kind=kind.name, **fields)
        return {"fault": fault.describe(fault.started)}

    def clear_faults(self) -> int:
        ended = self.faults.clear()
        self._faults_ended(ended)
        self.penalties.clear()
        return len(ended)

    def _faults_ended(self, ended: list[Fault]) -> None:
        for fault in ended:
            log.info("simulator_fault_ended", kind=fault.kind.name, id=fault.id)
            if fault.kind.end is not None:
                fault.kind.end(self, fault.params)

    def _after_snapshot(self, channel: str, key: str | None) -> None:
        """A subscriber was just sent a snapshot of (channel, key): the faults in force may act on it."""
        for fault in self.faults.active():
            if fault.kind.on_snapshot is not None:
                fault.kind.on_snapshot(self, fault.params, channel, key)

    def hide_from_ws(self, ticker: str, seconds: float) -> None:
        """Socks refreshes its market list every 5 min: a new ticker is rejected on the WebSocket for a while
        (`Invalid subscription id`) although REST lists it."""
        self._hidden_until[ticker] = time.monotonic() + seconds

    def _known_to_socks(self, channel: str, key: str | None) -> bool:
        if not self._hidden_until or key is None or channel not in (ch.ORDERBOOK, ch.TRADES, ch.CANDLES):
            return True
        ticker = key.rpartition("/")[0] if channel == ch.CANDLES else key
        until = self._hidden_until.get(ticker)
        if until is None:
            return True
        if time.monotonic() >= until:
            del self._hidden_until[ticker]
            return True
        return False

    def _snapshot_conditions(self) -> tuple[float, bool]:
        slow = self.faults.latest(REST_SLOW.name)
        failing = any(p.snapshots for p in self.faults.params(REST_ERROR.name))
        return (float(slow.delay) if slow else 0.0), failing

    @web.middleware
    async def _rest_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """REST faults, the optional rate limit, and request counting."""
        if not request.path.startswith("/v4/") or request.path == WS_PATH:
            response: web.StreamResponse = await handler(request)
            return response
        route = request.match_info.route.resource
        endpoint = route.canonical if route is not None else "unmatched"
        slow = self.faults.latest(REST_SLOW.name)
        if slow is not None:
            await asyncio.sleep(float(slow.delay))
        failing = self.faults.latest(REST_ERROR.name)
        allowed, limit_headers = True, dict[str, str]()
        if self._rest_limiter is not None:
            allowed, limit_headers = self._rest_limiter.check(request.remote or "", time.time())
        if not allowed:
            response = rest.errors(429, ch.REST_TOO_MANY_REQUESTS, limit_headers)
        elif failing is not None:
            status = int(failing.status)
            message = ch.REST_TOO_MANY_REQUESTS if status == 429 else "Internal Server Error"
            response = rest.errors(status, message)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = rest.errors(exc.status, exc.reason)
        if allowed and limit_headers:
            response.headers.update(limit_headers)
        self.stats.rest_requests[(endpoint, str(response.status))] += 1
        return response

    # ---- handlers ----
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        if self._stopping:
            return rest.errors(503, "Service restarting")
        reject = self.faults.latest(REJECT.name)
        if reject is not None:
            self.stats.handshakes_rejected += 1
            status = int(reject.status)
            message = ch.REST_TOO_MANY_REQUESTS if status == 429 else "Service Unavailable"
            headers = {}
            if reject.retry_after is not None:
                headers["Retry-After"] = str(math.ceil(reject.retry_after))
            return rest.errors(status, message, headers)
        address = client_address(request)
        refusal = self.penalties.refusal(address)
        if refusal is not None:
            self.stats.handshakes_rejected += 1
            return refusal
        ws = web.WebSocketResponse(
            autoping=False,
            compress=self._compress(request),
            # aiohttp refuses a message of exactly max_msg_size; socks (ws) accepts up to its maxPayload.
            max_msg_size=self.config.max_message_bytes + 1,
            timeout=self.config.close_timeout,
            decode_text=False,
        )
        await ws.prepare(request)
        session = Session(
            ws,
            request,
            self._session_deps,
            silent=bool(self.faults.active(SILENT.name)),
            penalize=lambda seconds: self.penalties.penalize(address, seconds),
        )
        self.sessions.add(session)
        self._no_sessions.clear()
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            if not self.sessions:
                self._no_sessions.set()
        return ws

    def _compress(self, request: web.Request) -> bool:
        """Whether this connection gets permessage-deflate: a draw per offering connection."""
        percent = self.config.compression_percent
        offered = "permessage-deflate" in request.headers.get("Sec-WebSocket-Extensions", "")
        return offered and percent > 0 and self._compression_draw.random() * 100 < percent

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def status(self) -> dict[str, Any]:
        height = self.source.height()[0]
        return {
            "paused": self._paused,
            "height": height,
            "markets": len(self.source.tickers()),
            "connections": len(self.sessions),
            "compressed_connections": sum(1 for s in self.sessions if s.ws.compress),
            "faults": self.faults.describe(),
            "lag_seconds": self.lag_seconds(),
        }
