"""The heads the feed is judged against, as metrics: each chain RPC node's, REST's and each link's.

`HeadsMetrics` is what the pollers of exporter.feed.heads report to (their HeadsObserver, but for REST's
request counts, which the Collector keeps with the other REST calls) and what the v4_block_height handler
tells about every link. `link_block` answers the freshest live link's head, which is `dydx_block_height`.
Series appear once known: a node's head after its first good poll (its `up` from the start, 0), REST's
after its first answer, a link's after its first block.
"""

from __future__ import annotations

from collections.abc import Iterable

from exporter.metrics import catalog as c
from exporter.metrics.histogram import Histogram, escape, fmt
from exporter.metrics.registry import MetricSource, per_row, renders


class RpcNode:
    """One --chain.rpc-url node."""

    __slots__ = ("block_time", "catching_up", "duration", "height", "label", "requests", "up")

    def __init__(self, name: str) -> None:
        self.label = f'rpc="{escape(name)}"'
        self.up = 0
        self.height = 0
        self.block_time = 0.0
        self.catching_up: bool | None = None  # None until a poll reported the node's head
        self.requests: dict[str, int] = {}
        self.duration = Histogram(c.CHAIN_RPC_DURATION_BUCKETS)


class LinkHead:
    __slots__ = ("height", "label", "live", "stamp")

    def __init__(self, link: str) -> None:
        self.label = f'connection="{escape(link)}"'
        self.height = 0
        self.stamp = 0.0
        self.live = True


class HeadsMetrics(MetricSource):
    def __init__(self) -> None:
        self._rpcs: dict[str, RpcNode] = {}
        self.rest_height = 0
        self.rest_block_time = 0.0
        self._links: dict[str, LinkHead] = {}

    # --- HeadsObserver --------------------------------------------------------------------------------
    def _rpc(self, rpc: str) -> RpcNode:
        node = self._rpcs.get(rpc)
        if node is None:
            node = self._rpcs[rpc] = RpcNode(rpc)
        return node

    def chain_rpc_request(self, rpc: str, code: str, seconds: float) -> None:
        node = self._rpc(rpc)
        node.requests[code] = node.requests.get(code, 0) + 1
        node.duration.observe(seconds)

    def chain_rpc_head(self, rpc: str, height: int, block_time: float, catching_up: bool) -> None:
        node = self._rpc(rpc)
        node.height, node.block_time, node.catching_up = height, block_time, catching_up

    def chain_rpc_up(self, rpc: str, up: bool) -> None:
        self._rpc(rpc).up = 1 if up else 0

    def rest_head(self, height: int, block_time: float) -> None:
        self.rest_height, self.rest_block_time = height, block_time

    # --- every link's v4_block_height -----------------------------------------------------------------
    def link_block(self, link: str, height: int, stamp: float) -> tuple[int, float]:
        """Record `link`'s newest block; returns the freshest live link's (height, time)."""
        head = self._links.get(link)
        if head is None:
            head = self._links[link] = LinkHead(link)
        head.height, head.stamp, head.live = height, stamp, True
        best = head
        for other in self._links.values():
            if other.live and other.height > best.height:
                best = other
        return best.height, best.stamp

    def link_closed(self, link: str) -> None:
        """A closed link's head stays exported (frozen) but no longer counts as the freshest."""
        head = self._links.get(link)
        if head is not None:
            head.live = False

    # --- exposition -----------------------------------------------------------------------------------
    def _known(self) -> list[RpcNode]:
        return [n for n in self._rpcs.values() if n.catching_up is not None]

    def _nodes(self) -> Iterable[RpcNode]:
        return self._rpcs.values()

    def _heads(self) -> list[LinkHead]:
        return [head for _, head in sorted(self._links.items())]

    _chain_height = per_row(c.CHAIN_BLOCK_HEIGHT, _known, lambda n: n.height)
    _chain_time = per_row(c.CHAIN_BLOCK_TIMESTAMP, _known, lambda n: n.block_time)
    _chain_catching_up = per_row(c.CHAIN_CATCHING_UP, _known, lambda n: 1 if n.catching_up else 0)
    _chain_up = per_row(c.CHAIN_RPC_UP, _nodes, lambda n: n.up)
    _link_height = per_row(c.LINK_BLOCK_HEIGHT, _heads, lambda h: h.height)
    _link_time = per_row(c.LINK_BLOCK_TIMESTAMP, _heads, lambda h: h.stamp)

    @renders(c.CHAIN_RPC_REQUESTS)
    def _chain_requests(self, name: str, out: list[str], now: float) -> None:
        for node in self._rpcs.values():
            for code, count in sorted(node.requests.items()):
                out.append(f'{name}{{{node.label},code="{escape(code)}"}} {count}\n')

    @renders(c.CHAIN_RPC_DURATION)
    def _chain_durations(self, name: str, out: list[str], now: float) -> None:
        for node in self._rpcs.values():
            node.duration.render(name, node.label, out)

    @renders(c.REST_BLOCK_HEIGHT)
    def _rest_height(self, name: str, out: list[str], now: float) -> None:
        if self.rest_height:
            out.append(f"{name} {self.rest_height}\n")

    @renders(c.REST_BLOCK_TIMESTAMP)
    def _rest_time(self, name: str, out: list[str], now: float) -> None:
        if self.rest_height:
            out.append(f"{name} {fmt(self.rest_block_time)}\n")
