"""The boundary between the feed (sockets, subscriptions) and the pipeline (decode → state → metrics).

The feed owns sockets and decides what to subscribe where. It hands every received frame, undecoded, to a
`FrameSink` and acts on the control event the sink returns (exporter.protocol.control; data frames return
None: the hot path allocates nothing for the feed). It reports its own health to a `FeedObserver`. Both
are implemented on the pipeline side: `exporter.state.router.Router` is the FrameSink, and
`exporter.metrics.collector.Collector` is the FeedObserver. Which markets exist is not the sink's business:
the MarketUniverse (exporter.state.universe) owns that, and the pool follows it. `ReadinessSource` is what
/readyz asks.

Links are named by the pool ("conn-0", "conn-1", ...): the names are bounded by the pool size and are the
`connection` label of `dydx_ws_connected`. A link keeps its name across reconnects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from exporter.protocol.control import Connected, Control, ServerError, Subscribed, Unsubscribed

__all__ = [
    "Connected",
    "Control",
    "FeedObserver",
    "FrameSink",
    "ReadinessSource",
    "ServerError",
    "Subscribed",
    "Unsubscribed",
]


class FrameSink(Protocol):
    def link_opened(self, link: str) -> None:
        """The WebSocket handshake on `link` succeeded; message-id tracking starts afresh."""

    def handle(self, link: str, raw: str | bytes, received_at: float) -> Control | None:
        """Decode and apply one frame. `received_at` is wall-clock time.time() at receipt.

        Never raises for bad input: a malformed or unexpected frame is counted in
        dydx_messages_invalid_total and logged, and None is returned.
        """

    def link_closed(self, link: str) -> None:
        """`link` is gone: forget its message ids; books it fed are no longer live until re-snapshotted."""

    def forget_market(self, ticker: str) -> None:
        """The market is delisted or no longer subscribed: drop its state and remove its series."""

    def last_data_at(self, link: str, channel: str) -> float | None:
        """Wall-clock time of the last frame of a rated `channel` (ChannelSpec.rated: the ones the link
        watchdog watches) on `link`; None if none yet."""


class FeedObserver(Protocol):
    """What the feed reports about itself. Label values are bounded; never put message text in one."""

    def link_up(self, link: str, up: bool) -> None:
        """dydx_ws_connected{connection}."""

    def link_disconnected(self, link: str, code: int) -> None:
        """dydx_ws_disconnects_total{code}; 1006 for a drop without a close frame."""

    def reconnected(self) -> None:
        """dydx_ws_reconnects_total: a link came back after having been up."""

    def connection_failed(self, reason: str) -> None:
        """dydx_ws_connection_failures_total{reason}: dns, refused, timeout, tls, http_429, http_error,
        handshake, reset, other."""

    def ping_rtt(self, seconds: float) -> None:
        """dydx_ws_ping_rtt_seconds: round trip of the exporter's own ping."""

    def subscriptions(self, counts: Mapping[tuple[str, str], int]) -> None:
        """dydx_subscriptions{channel,state}: the whole table, (channel, state) → count.
        States: active, pending, failed."""

    def subscription_failed(self, channel: str, reason: str) -> None:
        """dydx_subscription_failures_total{channel,reason}."""

    def component_up(self, component: str, up: bool) -> None:
        """dydx_component_up{component}: websocket, rest, processor."""

    def rest_request(self, endpoint: str, code: str, seconds: float) -> None:
        """One REST call: endpoint is a route template (never a raw URL), code the HTTP status or an
        error class."""


class ReadinessSource(Protocol):
    def not_ready_reasons(self, now: float) -> list[str]:
        """Empty when ready; otherwise short human-readable reasons, shown in the /readyz body."""
