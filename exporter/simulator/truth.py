"""Ground truth: what the simulator published, exposed at its own `/metrics`.

The hot path bumps plain ints in `Stats`; a custom collector turns them into metric families at scrape
time, in the simulator's own CollectorRegistry (never the global one).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.protocol import channels as ch

#: `channel` label of frames that belong to no channel (connected, errors without one, malformed).
NO_CHANNEL = "none"


@dataclass
class Stats:
    frames: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    updates: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    trades: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    connections_opened: int = 0
    closes: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    slow_consumers_cut: int = 0
    message_ids_skipped: int = 0
    handshakes_rejected: int = 0
    client_messages: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    rest_requests: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))


@dataclass(frozen=True)
class Live:
    """Gauges read at scrape time from the running server."""

    connections: Callable[[], int]
    subscriptions: Callable[[], dict[str, int]]
    block_height: Callable[[], int]
    markets: Callable[[], int]
    paused: Callable[[], bool]
    faults: Callable[[], dict[str, int]]
    queued_bytes: Callable[[], int]


class TruthCollector(Collector):
    def __init__(self, stats: Stats, live: Live) -> None:
        self._stats = stats
        self._live = live

    def collect(self) -> Iterator[Metric]:
        s, live = self._stats, self._live
        frames = CounterMetricFamily(
            "dydx_simulator_frames_sent",
            "Frames queued to clients, by channel and frame type (type malformed for injected garbage).",
            labels=["channel", "type"],
        )
        for (channel, frame_type), n in sorted(s.frames.items()):
            frames.add_metric([channel, frame_type], n)
        yield frames
        updates = CounterMetricFamily(
            "dydx_simulator_updates_published",
            "Updates produced by the market, per channel, whether or not anyone was subscribed.",
            labels=["channel"],
        )
        for channel in ch.ALL_CHANNELS:
            updates.add_metric([channel], s.updates.get(channel, 0))
        yield updates
        trades = CounterMetricFamily(
            "dydx_simulator_trades_published",
            "Live trades published on v4_trades (snapshot rows excluded), once per trade.",
            labels=["market"],
        )
        for market, n in sorted(s.trades.items()):
            trades.add_metric([market], n)
        yield trades
        yield GaugeMetricFamily(
            "dydx_simulator_connections", "Open WebSocket connections.", live.connections()
        )
        yield CounterMetricFamily(
            "dydx_simulator_connections_opened", "WebSocket handshakes accepted.", s.connections_opened
        )
        closes = CounterMetricFamily(
            "dydx_simulator_connections_closed",
            "WebSocket connections ended, by close code (1006: dropped without a close frame).",
            labels=["code"],
        )
        for code, n in sorted(s.closes.items()):
            closes.add_metric([code], n)
        yield closes
        subs = GaugeMetricFamily(
            "dydx_simulator_subscriptions", "Active subscriptions, per channel.", labels=["channel"]
        )
        counts = live.subscriptions()
        for channel in ch.ALL_CHANNELS:
            subs.add_metric([channel], counts.get(channel, 0))
        yield subs
        yield GaugeMetricFamily("dydx_simulator_block_height", "Latest block height.", live.block_height())
        yield GaugeMetricFamily("dydx_simulator_markets", "Listed markets.", live.markets())
        yield GaugeMetricFamily(
            "dydx_simulator_paused", "1 while market events are paused.", int(live.paused())
        )
        faults = GaugeMetricFamily("dydx_simulator_faults_active", "Active faults, by kind.", labels=["kind"])
        for kind, n in sorted(live.faults().items()):
            faults.add_metric([kind], n)
        yield faults
        yield CounterMetricFamily(
            "dydx_simulator_slow_consumers_cut",
            "Connections dropped because their send buffer overflowed.",
            s.slow_consumers_cut,
        )
        yield GaugeMetricFamily(
            "dydx_simulator_send_queue_bytes",
            "Bytes queued for clients, all connections.",
            live.queued_bytes(),
        )
        yield CounterMetricFamily(
            "dydx_simulator_message_ids_skipped", "Message ids skipped by gap faults.", s.message_ids_skipped
        )
        yield CounterMetricFamily(
            "dydx_simulator_handshakes_rejected",
            "WebSocket handshakes refused by reject faults.",
            s.handshakes_rejected,
        )
        received = CounterMetricFamily(
            "dydx_simulator_client_messages",
            "Client messages received, by outcome (subscribe, unsubscribe, ping, invalid, error).",
            labels=["kind"],
        )
        for kind, n in sorted(s.client_messages.items()):
            received.add_metric([kind], n)
        yield received
        rest = CounterMetricFamily(
            "dydx_simulator_rest_requests",
            "REST requests, by route and status code.",
            labels=["endpoint", "code"],
        )
        for (endpoint, code), n in sorted(s.rest_requests.items()):
            rest.add_metric([endpoint, code], n)
        yield rest


def build_registry(stats: Stats, live: Live) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TruthCollector(stats, live))
    return registry
