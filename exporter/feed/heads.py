"""The other heads the feed is judged against: the chain's (CometBFT `/status` of each `--chain.rpc-url`
full node) and REST's (`/v4/height`). See README "Is it the chain or the indexer?".

Each source is polled by a `Poller`: one GET every interval, and on a failure the same jittered backoff and
429 `Retry-After` handling as REST discovery (the next poll waits at least the interval). What a poll
learns goes to a `HeadsObserver` (the metrics), never straight to prometheus_client.

A chain node counts only on the indexer's network (`dydx-mainnet-1` for --dydx.network mainnet,
`dydx-testnet-4` for testnet): a node on another network at start stops the exporter with a clear error
(`check_networks`); one that changes later is reported down (`dydx_chain_rpc_up` 0) with the reason logged
as `chain_rpc_wrong_network`. A node that is catching up reports an old block as its latest: it is
exported with `dydx_chain_catching_up` 1, and the rules do not take it as the head.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import aiohttp

from exporter.feed.backoff import Backoff
from exporter.feed.errors import describe
from exporter.feed.http import HoldOff, HttpFailed, counted, get_json, invalid_body
from exporter.lifecycle import BackgroundTask
from exporter.logs import get_logger
from exporter.protocol import channels as ch
from exporter.protocol.frames import TimestampParser

log = get_logger(__name__)

HEIGHT_ENDPOINT: Final = "/v4/height"
STATUS_PATH: Final = "/status"
STATUS_ANSWER: Final = "a CometBFT /status answer"
HEIGHT_ANSWER: Final = "a /v4/height answer"
#: Longest `rpc` label value (a host name can be 253 characters).
MAX_RPC_NAME: Final = 48


class HeadsObserver(Protocol):
    """Where the pollers report (exporter.metrics.heads.HeadsMetrics)."""

    def chain_rpc_request(self, rpc: str, code: str, seconds: float) -> None: ...

    def chain_rpc_head(self, rpc: str, height: int, block_time: float, catching_up: bool) -> None: ...

    def chain_rpc_up(self, rpc: str, up: bool) -> None: ...

    def rest_head(self, height: int, block_time: float) -> None: ...


#: (endpoint, code, seconds) of one REST request: dydx_rest_requests_total, with discovery's.
RestRequests = Callable[[str, str, float], None]


class ChainNetworkMismatch(ValueError):
    """A configured full node is on another network than the indexer (a configuration error)."""


@dataclass(frozen=True, slots=True)
class NodeStatus:
    network: str
    height: int
    block_time: float
    catching_up: bool


_timestamps = TimestampParser()


def parse_time(text: object) -> float:
    """Epoch seconds of an RFC 3339 UTC time with up to nanoseconds (CometBFT) or milliseconds (REST)."""
    epoch = _timestamps(text)
    if epoch is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    return epoch


def parse_status(data: Any) -> NodeStatus:
    """CometBFT `/status` → NodeStatus; HttpFailed(invalid_body) when the shape is not that."""
    try:
        result = data["result"]
        sync = result["sync_info"]
        network = result["node_info"]["network"]
        height = int(sync["latest_block_height"])
        block_time = parse_time(sync["latest_block_time"])
        catching_up = sync["catching_up"]
        if not isinstance(network, str) or not isinstance(catching_up, bool):
            raise TypeError("network must be a string, catching_up a boolean")
    except (KeyError, TypeError, ValueError) as exc:
        raise invalid_body(STATUS_ANSWER, describe(exc)) from None
    return NodeStatus(network, height, block_time, catching_up)


def parse_height(data: Any) -> tuple[int, float]:
    """REST `/v4/height` ({"height": "<string>", "time": "<ISO>"}) → (height, epoch)."""
    try:
        return int(data["height"]), parse_time(data["time"])
    except (KeyError, TypeError, ValueError) as exc:
        raise invalid_body(HEIGHT_ANSWER, describe(exc)) from None


def rpc_names(urls: Sequence[str]) -> list[str]:
    """The `rpc` label of each URL: its host (never credentials, path or query), with the port when two
    URLs share a host, and a position suffix if that is still ambiguous. Bounded in length."""

    def host(url: str, with_port: bool) -> str:
        parts = urlsplit(url)
        name = (parts.hostname or "unknown")[:MAX_RPC_NAME]
        return f"{name}:{parts.port}" if with_port and parts.port else name

    names = [host(u, False) for u in urls]
    if len(set(names)) < len(names):
        names = [host(u, names.count(host(u, False)) > 1) for u in urls]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if names.count(name) == 1 else f"{name}-{seen[name]}")
    return out


class Poller:
    """Calls `poll()` every `interval`; after a failure (HttpFailed) waits the backoff instead, at least
    the interval and at least what a 429 asked for. `on_failure` reports it (metrics, log)."""

    def __init__(
        self,
        name: str,
        poll: Callable[[], Awaitable[None]],
        on_failure: Callable[[HttpFailed, float], None],
        interval: float,
        backoff: Backoff,
    ) -> None:
        self._poll = poll
        self._on_failure = on_failure
        self._interval = interval
        self._backoff = backoff
        self._task = BackgroundTask(name)

    def start(self, failed: HttpFailed | None = None) -> None:
        """Start polling; `failed` is how a first request (made by the caller) failed: wait first."""
        self._task.start(lambda: self._loop(self._failed(failed) if failed is not None else 0.0))

    async def stop(self) -> None:
        await self._task.stop()

    def _failed(self, failure: HttpFailed) -> float:
        delay = max(self._interval, self._backoff.next_delay(failure.retry_after))
        self._on_failure(failure, delay)
        return delay

    async def _loop(self, delay: float) -> None:
        await asyncio.sleep(delay)
        while True:
            try:
                await self._poll()
            except HttpFailed as failure:
                await asyncio.sleep(self._failed(failure))
                continue
            self._backoff.reset()
            await asyncio.sleep(self._interval)


@dataclass(eq=False)
class ChainNode:
    """One `--chain.rpc-url` full node: polls its `/status` and reports its head."""

    url: str  # without a trailing slash
    name: str  # its `rpc` label
    network: str  # the indexer's: a node on another one is reported down
    session: aiohttp.ClientSession
    observer: HeadsObserver
    timeout: float
    _wrong_network: str | None = field(default=None, init=False)

    async def fetch(self) -> NodeStatus:
        """One GET /status, counted in dydx_chain_rpc_requests_total; raises HttpFailed."""
        return await counted(self._get_status(), self.observer.chain_rpc_request, self.name)

    async def _get_status(self) -> NodeStatus:
        return parse_status(await get_json(self.session, self.url + STATUS_PATH, self.timeout, STATUS_ANSWER))

    async def poll(self) -> None:
        status = await self.fetch()
        if status.network != self.network:
            if self._wrong_network != status.network:
                log.error(
                    "chain_rpc_wrong_network",
                    rpc=self.name,
                    network=status.network,
                    expected=self.network,
                    reason="the node answers for another network than the indexer's; its head is ignored",
                )
            self._wrong_network = status.network
            self.observer.chain_rpc_up(self.name, False)
            return
        if self._wrong_network is not None:
            log.info("chain_rpc_network_restored", rpc=self.name, network=status.network)
            self._wrong_network = None
        self.observer.chain_rpc_head(self.name, status.height, status.block_time, status.catching_up)
        self.observer.chain_rpc_up(self.name, True)

    def failed(self, failure: HttpFailed, retry_in: float) -> None:
        self.observer.chain_rpc_up(self.name, False)
        log.warning(
            "chain_rpc_poll_failed",
            rpc=self.name,
            code=failure.code,
            error=failure.detail,
            retry_in=round(retry_in, 3),
        )


class RestHead:
    """REST's head: polls the indexer's `/v4/height`."""

    def __init__(
        self,
        rest_url: str,
        session: aiohttp.ClientSession,
        observer: HeadsObserver,
        requests: RestRequests,
        timeout: float,
        hold: HoldOff,
    ) -> None:
        self.url = rest_url.rstrip("/") + HEIGHT_ENDPOINT
        self._hold = hold
        self._session = session
        self._observer = observer
        self._requests = requests
        self._timeout = timeout

    async def poll(self) -> None:
        height, block_time = await counted(self._get_height(), self._requests, HEIGHT_ENDPOINT)
        self._observer.rest_head(height, block_time)

    async def _get_height(self) -> tuple[int, float]:
        data = await get_json(
            self._session,
            self.url,
            self._timeout,
            HEIGHT_ANSWER,
            retry_after_milliseconds=True,
            hold=self._hold,
        )
        return parse_height(data)

    def failed(self, failure: HttpFailed, retry_in: float) -> None:
        log.warning(
            "rest_height_poll_failed", code=failure.code, error=failure.detail, retry_in=round(retry_in, 3)
        )


@dataclass(frozen=True, slots=True)
class HeadsSettings:
    chain_rpc_urls: tuple[str, ...]
    network: str  # --dydx.network: mainnet or testnet
    rest_url: str
    chain_poll_interval: float
    rest_height_interval: float  # 0: REST's head is not polled
    timeout: float
    backoff_initial: float
    backoff_max: float


class Heads:
    """Every poller of the chain's and REST's heads, with one lifecycle."""

    def __init__(
        self,
        settings: HeadsSettings,
        session: aiohttp.ClientSession,
        observer: HeadsObserver,
        rest_requests: RestRequests,
        rest_hold: HoldOff,
    ) -> None:
        self._settings = s = settings
        network = ch.CHAIN_NETWORKS[s.network]
        self.nodes = [
            ChainNode(url.rstrip("/"), name, network, session, observer, s.timeout)
            for url, name in zip(s.chain_rpc_urls, rpc_names(s.chain_rpc_urls), strict=True)
        ]
        self.rest = (
            RestHead(s.rest_url, session, observer, rest_requests, s.timeout, rest_hold)
            if s.rest_height_interval
            else None
        )
        self._observer = observer
        self._pollers: list[Poller] = []

    def _backoff(self) -> Backoff:
        s = self._settings
        return Backoff(s.backoff_initial, max(s.backoff_max, s.backoff_initial))

    async def check_networks(self) -> list[HttpFailed | None]:
        """One /status of every node at start: a reachable node on another network than the indexer's is
        a configuration error (ChainNetworkMismatch, naming it); how each unreachable one failed is
        returned (None for a good one)."""
        results = await asyncio.gather(*(node.fetch() for node in self.nodes), return_exceptions=True)
        failures: list[HttpFailed | None] = []
        for node, result in zip(self.nodes, results, strict=True):
            if isinstance(result, NodeStatus) and result.network != node.network:
                raise ChainNetworkMismatch(
                    f"--chain.rpc-url: {node.name} is on network {result.network!r}, but the indexer "
                    f"(--dydx.network {self._settings.network}) is on {node.network!r}"
                )
            if isinstance(result, BaseException) and not isinstance(result, HttpFailed):
                raise result
            failures.append(result if isinstance(result, HttpFailed) else None)
        return failures

    async def start(self) -> None:
        s = self._settings
        for node in self.nodes:
            self._observer.chain_rpc_up(node.name, False)
        failures = await self.check_networks() if self.nodes else []
        for node, failed in zip(self.nodes, failures, strict=True):
            poller = Poller(
                f"chain-rpc-{node.name}", node.poll, node.failed, s.chain_poll_interval, self._backoff()
            )
            poller.start(failed)
            self._pollers.append(poller)
        if self.rest is not None:
            rest = self.rest
            poller = Poller("rest-height", rest.poll, rest.failed, s.rest_height_interval, self._backoff())
            poller.start()
            self._pollers.append(poller)
        if self.nodes:
            log.info("chain_rpc_polling", rpcs=[n.name for n in self.nodes], network=self.nodes[0].network)

    async def stop(self) -> None:
        pollers, self._pollers = self._pollers, []
        await asyncio.gather(*(p.stop() for p in pollers))
