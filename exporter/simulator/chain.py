"""The chain apart from the indexer: a CometBFT RPC of a full node, and an indexer that follows the chain.

The event source (the synthetic market, or a replay) is the chain: each block it makes is a block of the
chain, and its head (`height()`) is the chain's head. What clients of the indexer see goes through three
stages that can each fall behind it:

    source (the chain) ──► IndexerFeed ──► Hub ──► each connection (DelayedSubscriber under link_lag)
       │                      │
       └ CometBFT RPC         └ the indexer's head: v4_block_height snapshots, REST /v4/height (- rest_lag)

- `ChainedSource` wraps the source for the server: it stops the whole chain during `chain_halt` (no
  blocks, no trades, no order book changes: the indexer has nothing to publish), and answers height
  questions (REST /v4/height, the v4_block_height snapshot) with the indexer's head; under `rest_lag`
  REST's trades and the trades snapshots (socks fetches them from REST) stop at REST's head too. Order
  book snapshots stay current: the model keeps no old books.
- `IndexerFeed` sits between the source and the hub: it passes frames straight through, or under
  `indexer_lag` holds every frame back (a fixed lag, or one that grows) and releases them in order.
- `ChainRpc` serves `GET /status` and `GET /block` in the exact CometBFT shapes (protocol reference §7) on
  its own address (`--chain-rpc.listen-address`); `rpc_down` drops its connections, `rpc_catching_up`
  freezes its head and says `catching_up: true`.
- `link_lag` wraps one connection in the hub so its data frames reach it late while the others stay fresh
  (one saturated socks instance).

`Chain.truth()` is the section of GET /control/truth that says what the chain, the indexer, REST and each
connection really are.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import orjson
from aiohttp import web

from exporter.logs import get_logger
from exporter.options import parse_listen_address
from exporter.protocol import channels as ch
from exporter.simulator import formats
from exporter.simulator.source import EventSource, Publisher

log = get_logger(__name__)

#: The networks the exporter knows (`--dydx.network` mainnet, testnet), as CometBFT names them.
MAINNET: Final = ch.CHAIN_NETWORKS["mainnet"]
TESTNET: Final = ch.CHAIN_NETWORKS["testnet"]
#: How often held-back frames are looked at for release.
RELEASE_INTERVAL_S: Final = 0.02
#: Seconds a growing indexer_lag adds per second.
LAG_GROWTH: Final = 0.5
#: Block heads kept for REST lag and /block?height= (blocks).
HISTORY_BLOCKS: Final = 10_000
COMETBFT_VERSION: Final = "0.38.12"


def parse_rpc_listen_address(value: object) -> tuple[str, int | None]:
    """`--chain-rpc.listen-address`: HOST:PORT as --web.listen-address, or empty for no RPC (port None)."""
    if value is None or str(value).strip() == "":
        return "127.0.0.1", None
    return parse_listen_address(value)


def rfc3339_nanos(epoch: float) -> str:
    """CometBFT's block time: RFC 3339 in UTC with nanoseconds (2026-03-04T19:21:07.100000000Z)."""
    moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    nanos = round((epoch - int(epoch)) * 1e9) % 1_000_000_000
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos:09d}Z"


def block_hash(network: str, height: int) -> str:
    return hashlib.sha256(f"{network}/{height}".encode()).hexdigest().upper()


def _record_head(heads: deque[tuple[int, float]], contents: Any) -> None:
    """Append the (height, epoch) of a v4_block_height update; one a replayed capture got wrong is
    skipped (the clients still receive it as it was)."""
    with contextlib.suppress(KeyError, TypeError, ValueError):
        heads.append((int(contents["blockHeight"]), formats.parse_iso(contents["time"])))


def _created_at_height(row: Mapping[str, Any]) -> int:
    """A trade row's block height (0 when a replayed capture's row has none that reads as one)."""
    try:
        return int(row.get("createdAtHeight", 0))
    except (TypeError, ValueError):
        return 0


class IndexerFeed:
    """The indexer's output stage: a Publisher in front of the hub that may hold frames back.

    `delay(now)` is the lag in force (0: frames pass straight through, the usual case: one attribute test
    per frame). Held frames are released in publication order once their time has come; when the lag ends
    the backlog goes out at once (the indexer catches up). It also records the block heads the indexer has
    published, newest last.
    """

    def __init__(self, downstream: Publisher, clock: Callable[[], float] = time.monotonic) -> None:
        self._down = downstream
        self._clock = clock
        self._held: deque[tuple[float, str, str | None, Any, bytes]] = deque()
        self.delay: Callable[[float], float] | None = None
        #: (height, block time epoch) of the blocks the chain made and of those the indexer published.
        self.chain_heads: deque[tuple[int, float]] = deque(maxlen=HISTORY_BLOCKS)
        self.heads: deque[tuple[int, float]] = deque(maxlen=HISTORY_BLOCKS)

    def publish(self, channel: str, key: str | None, contents: Any, extra: bytes = b"") -> None:
        if channel == ch.BLOCK_HEIGHT:
            _record_head(self.chain_heads, contents)
        if self.delay is None and not self._held:
            self._deliver(channel, key, contents, extra)
            return
        now = self._clock()
        lag = self.delay(now) if self.delay is not None else 0.0
        self._held.append((now + lag, channel, key, contents, extra))

    def _deliver(self, channel: str, key: str | None, contents: Any, extra: bytes) -> None:
        if channel == ch.BLOCK_HEIGHT:
            _record_head(self.heads, contents)
        self._down.publish(channel, key, contents, extra)

    def release(self, everything: bool = False) -> int:
        """Hand on the held frames whose time has come (all of them with `everything`)."""
        held, now, released = self._held, self._clock(), 0
        while held and (everything or held[0][0] <= now):
            _, channel, key, contents, extra = held.popleft()
            self._deliver(channel, key, contents, extra)
            released += 1
        return released

    @property
    def held(self) -> int:
        return len(self._held)


class ChainedSource:
    """The server's EventSource: the chain's source, seen through the indexer. See the module doc."""

    def __init__(self, chain_source: EventSource, chain: Chain) -> None:
        self.inner = chain_source
        self._chain = chain
        self.tick_interval = chain_source.tick_interval

    def advance(self, exchange_now: float) -> None:
        if not self._chain.halted:
            self.inner.advance(exchange_now)

    def height(self) -> tuple[int, float]:
        """REST's head: the indexer's, `rest_lag` blocks back."""
        return self._chain.rest_head()

    def snapshot(self, channel: str, key: str | None) -> Any:
        if channel == ch.BLOCK_HEIGHT:
            height, at = self._chain.indexer_head()
            return {"height": str(height), "time": formats.iso_ms(at)}
        contents = self.inner.snapshot(channel, key)
        if channel == ch.TRADES and self._chain.rest_lag_blocks and isinstance(contents, dict):
            # socks fetches a subscription's snapshot from comlink: as far behind as REST's replicas.
            return {**contents, "trades": self._trail(contents.get("trades") or [])}
        return contents

    def _trail(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The trade rows REST's head has reached (rest_lag)."""
        head = self._chain.rest_head()[0]
        return [row for row in rows if _created_at_height(row) <= head]

    # Everything else is the chain's source as it is.
    def valid(self, channel: str, key: str | None) -> bool:
        return self.inner.valid(channel, key)

    def rest_markets(self, ticker: str | None, limit: int) -> Mapping[str, Any] | None:
        return self.inner.rest_markets(ticker, limit)

    def rest_orderbook(self, ticker: str) -> Mapping[str, Any] | None:
        return self.inner.rest_orderbook(ticker)

    def rest_trades(self, ticker: str) -> list[dict[str, Any]] | None:
        rows = self.inner.rest_trades(ticker)
        return self._trail(rows) if rows is not None and self._chain.rest_lag_blocks else rows

    def rest_candles(self, ticker: str, resolution: str) -> list[dict[str, Any]] | None:
        return self.inner.rest_candles(ticker, resolution)

    def tickers(self) -> list[str]:
        return self.inner.tickers()

    def list_market(self, ticker: str, price: float | None) -> dict[str, Any]:
        return self.inner.list_market(ticker, price)

    def delist_market(self, ticker: str) -> None:
        self.inner.delist_market(ticker)

    def start_cross(self, ticker: str, keep: bool = False) -> None:
        self.inner.start_cross(ticker, keep)

    def recross(self, ticker: str) -> None:
        self.inner.recross(ticker)

    def end_cross(self, ticker: str) -> None:
        self.inner.end_cross(ticker)


class DelayedSubscriber:
    """One connection whose data frames reach it `seconds` late (link_lag). It stands in for the session in
    the hub's subscriber tables and compares equal to it, so the session's own unsubscribe and close find
    it. Frames are released in order by `release()`; `flush()` sends the rest at once when the lag ends."""

    __slots__ = ("_held", "_hub_batched", "seconds", "session")

    def __init__(self, session: Any, seconds: float) -> None:
        self.session = session
        self.seconds = seconds
        self._held: deque[tuple[float, bool, bytes]] = deque()

    def __hash__(self) -> int:
        return hash(self.session)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DelayedSubscriber):
            return other.session is self.session
        return other is self.session

    def send_data(self, body: bytes) -> None:
        self._held.append((time.monotonic() + self.seconds, False, body))

    def send_batch(self, body: bytes) -> None:
        self._held.append((time.monotonic() + self.seconds, True, body))

    def release(self, everything: bool = False) -> None:
        held, now = self._held, time.monotonic()
        while held and (everything or held[0][0] <= now):
            _, batched, body = held.popleft()
            if batched:
                self.session.send_batch(body)
            else:
                self.session.send_data(body)


class Chain:
    """The chain's state the faults change, the indexer that follows it, and its ground truth.

    `source` is the chain's event source (its blocks are the chain's); wire it as
    `Chain(...)`, `source = factory(chain.feed)`, `server_source = chain.attach(source)`.
    """

    def __init__(self, downstream: Publisher, network: str = MAINNET, block_time: float = 1.0) -> None:
        self.network = network
        self.block_time = block_time
        self.feed = IndexerFeed(downstream)
        self._source: EventSource | None = None
        self.halted = False
        self.rpc_down = False
        self.rpc_status: int | None = None
        #: The head a catching-up node reports (frozen), or None when it is in sync.
        self.catching_up_at: tuple[int, float] | None = None
        self.rest_lag_blocks = 0
        self.links: dict[str, DelayedSubscriber] = {}
        #: connection_id → the `connection` a link_lag named it by (an id or an index).
        self.link_index: dict[str, str] = {}
        self._hub: Any = None
        self._task: asyncio.Task[None] | None = None

    def attach(self, source: EventSource, hub: Any = None) -> ChainedSource:
        self._source = source
        self._hub = hub
        return ChainedSource(source, self)

    # ---- heads ----
    def chain_head(self) -> tuple[int, float]:
        assert self._source is not None, "attach() the chain's source first"
        return self._source.height()

    def indexer_head(self) -> tuple[int, float]:
        """The newest block the indexer has published (the chain's head before its first block)."""
        heads = self.feed.heads
        return heads[-1] if heads else self.chain_head()

    def rest_head(self) -> tuple[int, float]:
        heads = self.feed.heads
        if not heads:
            return self.chain_head()
        back = min(self.rest_lag_blocks, len(heads) - 1)
        return heads[-1 - back]

    def rpc_head(self) -> tuple[int, float]:
        return self.catching_up_at if self.catching_up_at is not None else self.chain_head()

    # ---- faults ----
    def start_catching_up(self) -> None:
        self.catching_up_at = self.chain_head()

    def start_halt(self) -> None:
        self.halted = True
        log.info("simulator_chain_halted", height=self.chain_head()[0])

    def end_halt(self) -> None:
        self.halted = False
        log.info("simulator_chain_resumed", height=self.chain_head()[0])

    def start_indexer_lag(self, seconds: float, growing: bool) -> None:
        """Hold every frame back `seconds`, or (growing) by a lag that grows by half a second per second
        (the indexer at two thirds of the chain's speed) up to `seconds`."""
        started = time.monotonic()
        if growing:
            self.feed.delay = lambda now: min(seconds, (now - started) * LAG_GROWTH)
        else:
            self.feed.delay = lambda now: seconds

    def end_indexer_lag(self) -> None:
        self.feed.delay = None
        self.feed.release(everything=True)

    def start_link_lag(self, sessions: Iterable[Any], connection: str, seconds: float) -> str:
        """Delay the data frames of one connection: `connection` is a connection_id, or the index of the
        connection in order of arrival ("0" the oldest). Returns its connection_id."""
        ordered = sorted(sessions, key=lambda s: getattr(s, "opened_at", 0.0))
        chosen = next((s for s in ordered if s.connection_id == connection), None)
        if chosen is None and connection.isdigit() and int(connection) < len(ordered):
            chosen = ordered[int(connection)]
        if chosen is None:
            ids = ", ".join(s.connection_id for s in ordered) or "none open"
            raise ValueError(f"link_lag.connection {connection!r} is neither an index nor one of: {ids}")
        cid = str(chosen.connection_id)
        self.link_index[cid] = connection
        wrapper = self.links.get(cid)
        if wrapper is not None:  # lagged already: the newest lag applies to what is sent from now on
            wrapper.seconds = seconds
            return cid
        wrapper = DelayedSubscriber(chosen, seconds)
        self._rewire(chosen, wrapper)
        self.links[cid] = wrapper
        log.info("simulator_link_lagged", connection_id=cid, seconds=seconds)
        return cid

    def end_link_lag(self, connection_id: str) -> None:
        self.link_index.pop(connection_id, None)
        wrapper = self.links.pop(connection_id, None)
        if wrapper is not None:
            wrapper.release(everything=True)
            self._rewire(wrapper.session, wrapper.session)

    def _rewire(self, session: Any, stand_in: Any) -> None:
        """Put `stand_in` in the session's place in every subscriber table of the hub."""
        for subscribers in self._hub.subs.values():
            if session in subscribers:
                batched = subscribers.pop(session)
                subscribers[stand_in] = batched

    # ---- clock ----
    async def run(self) -> None:
        """Release held frames as their time comes (the server runs this as one of its tasks)."""
        while True:
            await asyncio.sleep(RELEASE_INTERVAL_S)
            self.feed.release()
            for wrapper in list(self.links.values()):
                if wrapper.session.closing:
                    self.links.pop(wrapper.session.connection_id, None)
                else:
                    wrapper.release()

    # ---- ground truth ----
    def truth(self) -> dict[str, Any]:
        chain_height, chain_at = self.chain_head()
        indexer_height, indexer_at = self.indexer_head()
        rest_height, rest_at = self.rest_head()
        rpc_height, _ = self.rpc_head()
        return {
            "network": self.network,
            "chain": {"height": chain_height, "time": formats.iso_ms(chain_at), "halted": self.halted},
            "rpc": {
                "up": not self.rpc_down,
                "catching_up": self.catching_up_at is not None,
                "height": rpc_height,
            },
            "indexer": {
                "height": indexer_height,
                "time": formats.iso_ms(indexer_at),
                "behind_blocks": chain_height - indexer_height,
                "held_frames": self.feed.held,
            },
            "rest": {
                "height": rest_height,
                "time": formats.iso_ms(rest_at),
                "lag_blocks": self.rest_lag_blocks,
            },
            "connections": {cid: {"lag_seconds": w.seconds} for cid, w in sorted(self.links.items())},
        }


class ChainRpc:
    """The CometBFT RPC of one full node of the simulated chain, on its own address."""

    def __init__(self, chain: Chain, host: str, port: int) -> None:
        self.chain = chain
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._faults])
        app.router.add_get("/status", self.status)
        app.router.add_get("/block", self.block)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host or None, self.port).start()
        self.port = int(self._runner.addresses[0][1])
        log.info("simulator_chain_rpc_started", url=self.url, network=self.chain.network)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @web.middleware
    async def _faults(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.chain.rpc_down:
            if self.chain.rpc_status is not None:
                return web.json_response({"error": "node unavailable"}, status=self.chain.rpc_status)
            if request.transport is not None:
                request.transport.abort()  # a dead node: the connection drops without an answer
            raise web.HTTPServiceUnavailable()
        response: web.StreamResponse = await handler(request)
        return response

    def _answer(self, result: Mapping[str, Any]) -> web.Response:
        body = orjson.dumps({"jsonrpc": "2.0", "id": -1, "result": result})
        return web.Response(body=body, content_type="application/json")

    async def status(self, request: web.Request) -> web.Response:
        chain = self.chain
        height, at = chain.rpc_head()
        return self._answer(
            {
                "node_info": {
                    "protocol_version": {"p2p": "8", "block": "11", "app": "0"},
                    "id": hashlib.sha1(chain.network.encode()).hexdigest(),
                    "listen_addr": "tcp://0.0.0.0:26656",
                    "network": chain.network,
                    "version": COMETBFT_VERSION,
                    "channels": "40202122233038606100",
                    "moniker": "dydx-exporter-simulator",
                    "other": {"tx_index": "on", "rpc_address": "tcp://0.0.0.0:26657"},
                },
                "sync_info": {
                    "latest_block_hash": block_hash(chain.network, height),
                    "latest_app_hash": block_hash(chain.network, -height),
                    "latest_block_height": str(height),
                    "latest_block_time": rfc3339_nanos(at),
                    "earliest_block_hash": block_hash(chain.network, 1),
                    "earliest_app_hash": block_hash(chain.network, -1),
                    "earliest_block_height": "1",
                    "earliest_block_time": "2023-10-26T00:00:00.000000000Z",
                    "catching_up": chain.catching_up_at is not None,
                },
                "validator_info": {
                    "address": block_hash(chain.network, 0)[:40],
                    "pub_key": {"type": "tendermint/PubKeyEd25519", "value": ""},
                    "voting_power": "0",
                },
            }
        )

    async def block(self, request: web.Request) -> web.Response:
        chain = self.chain
        height, at = chain.rpc_head()
        wanted = request.query.get("height")
        if wanted is not None:
            known = dict(chain.feed.chain_heads)
            if not wanted.isdigit() or (int(wanted) not in known and int(wanted) != height):
                return web.json_response(
                    {
                        "jsonrpc": "2.0",
                        "id": -1,
                        "error": {
                            "code": -32603,
                            "message": "Internal error",
                            "data": f"height {wanted} is not available (latest {height})",
                        },
                    },
                    status=500,
                )
            height, at = int(wanted), known.get(int(wanted), at)
        return self._answer(
            {
                "block_id": {"hash": block_hash(chain.network, height), "parts": {"total": 1, "hash": ""}},
                "block": {
                    "header": {
                        "version": {"block": "11", "app": "0"},
                        "chain_id": chain.network,
                        "height": str(height),
                        "time": rfc3339_nanos(at),
                        "last_block_id": {"hash": block_hash(chain.network, height - 1)},
                        "proposer_address": block_hash(chain.network, 0)[:40],
                    },
                    "data": {"txs": []},
                    "evidence": {"evidence": []},
                    "last_commit": {"height": str(height - 1), "round": 0, "signatures": []},
                },
            }
        )
