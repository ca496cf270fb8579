"""The exporter's metrics: the hot-path counters and the feed's own health, and their exposition.

Counting happens in plain ints and floats on pre-bound objects (`ChannelMetrics` per channel,
`MarketMetrics` per market, see exporter.metrics.channels / markets / subaccounts): an update costs tens of
nanoseconds, never a `.labels()` lookup. At scrape time the exposition text (Prometheus 0.0.4 or
OpenMetrics 1.0) is rendered family by family, in catalog order, by the renderers beside each piece of
state (exporter.metrics.registry; checked against the catalog when this module is imported), yielding to
the event loop between slices so a scrape of hundreds of markets never holds up frame processing for more
than a couple of milliseconds.

`Collector.registry` is a prometheus_client CollectorRegistry too (process and GC collectors, anything
else registered on it, and the catalog through an adapter), so `generate_latest(collector.registry)` keeps
working; the web server uses the registry's faster `render_async`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_latest_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector as PromCollector

from exporter.loop import let_io_in
from exporter.metrics import catalog as c
from exporter.metrics import registry
from exporter.metrics.channels import ChannelMetrics, ChannelTable
from exporter.metrics.heads import HeadsMetrics
from exporter.metrics.histogram import Histogram, by_label, escape, labelled
from exporter.metrics.markets import MarketMetrics, MarketTable
from exporter.metrics.registry import MetricSource, Renderer, renders, scalar
from exporter.metrics.subaccounts import SubaccountMetrics, SubaccountTable
from exporter.protocol import channels as ch

#: A render yields to the event loop after holding it this long (a family is never split, so a slice can
#: run over by one family: the per-market ones take ≈ 0.2 ms at 267 markets).
RENDER_SLICE_S = 0.0005


class Collector(MetricSource):
    """FeedObserver for the feed's own health, the hot-path globals the router updates, and the tables of
    per-channel, per-market and per-subaccount metrics."""

    def __init__(
        self,
        *,
        version: str,
        channels: Sequence[str],
        subaccounts: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.version = version
        self._clock = clock
        self._channels = ChannelTable(channels)
        self._markets = MarketTable()
        self._subaccounts = SubaccountTable(subaccounts)
        #: The chain's, REST's and each link's heads (exporter.feed.heads reports here).
        self.heads = HeadsMetrics()
        # Hot-path globals, incremented by the router.
        self.received_bytes = 0
        self.message_id_gaps = 0
        self.trades_duplicate = 0
        self.block_height = 0
        self.block_timestamp = 0.0
        # FeedObserver state.
        self.ws_errors: dict[str, int] = dict.fromkeys(
            [reason for _, reason in ch.ERROR_REASONS] + [ch.ERROR_REASON_OTHER], 0
        )
        self._components: dict[str, int] = dict.fromkeys(c.COMPONENTS, 0)
        self._component_probes: dict[str, Callable[[float], bool]] = {}
        self._ready_probe: Callable[[float], bool] | None = None
        self._links: dict[str, int] = {}
        self._disconnects: dict[str, int] = dict.fromkeys(c.DISCONNECT_CODES, 0)
        self._reconnects = 0
        self._connection_failures: dict[str, int] = dict.fromkeys(c.CONNECTION_FAILURE_REASONS, 0)
        self._ping_rtt = Histogram(c.PING_RTT_BUCKETS)
        self._subscriptions: dict[tuple[str, str], int] = {
            (name, state): 0 for name in channels for state in c.SUBSCRIPTION_STATES
        }
        self._subscription_failures: dict[tuple[str, str], int] = {
            (name, reason): 0 for name in channels for reason in c.SUBSCRIPTION_FAILURE_REASONS
        }
        self._rest_requests: dict[tuple[str, str], int] = {}
        self._rest_durations: dict[str, Histogram] = {}
        self.loop_lag = Histogram(c.LOOP_LAG_BUCKETS)
        self._scrape_duration = 0.0
        self._scrape_size = 0
        self._renderers: dict[c.MetricSpec, Renderer] = {}
        for source in (self, self._channels, self._markets, self._subaccounts, self.heads):
            self._renderers.update(source.renderers())
        self.registry = ExporterRegistry(self)

    # --- pre-bound objects for the hot path -----------------------------------------------------------
    def channel(self, name: str) -> ChannelMetrics:
        """The metrics of a protocol channel (created at zero on first use); unknown names map to the
        bounded `unknown` channel."""
        return self._channels.channel(name)

    @property
    def no_channel(self) -> ChannelMetrics:
        return self._channels.no_channel

    @property
    def unknown_channel(self) -> ChannelMetrics:
        return self._channels.unknown_channel

    def market(self, ticker: str) -> MarketMetrics:
        return self._markets.market(ticker)

    def existing_market(self, ticker: str) -> MarketMetrics | None:
        return self._markets.markets.get(ticker)

    @property
    def markets(self) -> Mapping[str, MarketMetrics]:
        """Every tracked market by ticker: a live read-only view for hot-path lookups (the same object for
        the collector's lifetime)."""
        return self._markets.markets

    def forget_market(self, ticker: str, still_listed: str | None = None) -> None:
        """Remove every series of the market (delisted or unsubscribed), but its dydx_market_info while the
        indexer still lists it (`still_listed` is then its status)."""
        self._markets.forget(ticker, still_listed)

    def subaccount(self, sub_id: str) -> SubaccountMetrics | None:
        """The metrics of a configured subaccount; None for any other id (the label stays bounded)."""
        return self._subaccounts.subaccount(sub_id)

    def server_error(self, reason: str) -> None:
        errors = self.ws_errors
        errors[reason if reason in errors else ch.ERROR_REASON_OTHER] += 1

    def set_component_probe(self, component: str, probe: Callable[[float], bool]) -> None:
        """`probe(now)` decides dydx_component_up{component} at scrape time (the processor's freshness)."""
        self._component_probes[component] = probe
        self._components.setdefault(component, 0)

    def set_ready_probe(self, probe: Callable[[float], bool]) -> None:
        """`probe(now)` decides dydx_ready at scrape time (the same decision as /readyz); 0 without one."""
        self._ready_probe = probe

    # --- FeedObserver ---------------------------------------------------------------------------------
    def link_up(self, link: str, up: bool) -> None:
        self._links[link] = 1 if up else 0

    def link_disconnected(self, link: str, code: int) -> None:
        key = str(code) if 1000 <= code <= 4999 else "other"
        self._disconnects[key] = self._disconnects.get(key, 0) + 1

    def reconnected(self) -> None:
        self._reconnects += 1

    def connection_failed(self, reason: str) -> None:
        key = reason if reason in self._connection_failures else "other"
        self._connection_failures[key] += 1

    def ping_rtt(self, seconds: float) -> None:
        if seconds >= 0.0:
            self._ping_rtt.observe(seconds)

    def subscriptions(self, counts: Mapping[tuple[str, str], int]) -> None:
        table = dict.fromkeys(self._subscriptions, 0)
        table.update(counts)
        self._subscriptions = table

    def subscription_failed(self, channel: str, reason: str) -> None:
        key = (channel, reason)
        self._subscription_failures[key] = self._subscription_failures.get(key, 0) + 1

    def component_up(self, component: str, up: bool) -> None:
        self._components[component] = 1 if up else 0

    def rest_request(self, endpoint: str, code: str, seconds: float) -> None:
        key = (endpoint, code)
        self._rest_requests[key] = self._rest_requests.get(key, 0) + 1
        histogram = self._rest_durations.get(endpoint)
        if histogram is None:
            histogram = self._rest_durations[endpoint] = Histogram(c.REST_DURATION_BUCKETS)
        if seconds >= 0.0:
            histogram.observe(seconds)

    # --- exposition -----------------------------------------------------------------------------------
    def record_scrape(self, seconds: float, size: int) -> None:
        self._scrape_duration = seconds
        self._scrape_size = size

    def render_families(self, openmetrics: bool = False) -> Iterator[str]:
        """The catalog's exposition text, one family per item, in catalog order (no `# EOF`)."""
        now = self._clock()
        renderers = self._renderers
        for spec in c.CATALOG:
            out: list[str] = [_header(spec, openmetrics)]
            renderers[spec](spec.name, out, now)
            yield "".join(out)

    def render_text(self, openmetrics: bool = False) -> str:
        return "".join(self.render_families(openmetrics))

    # --- the families of the feed's health and the hot-path globals -----------------------------------
    _received_bytes = scalar(c.WS_RECEIVED_BYTES, "received_bytes")
    _reconnects_family = scalar(c.RECONNECTS, "_reconnects")
    _gaps = scalar(c.MESSAGE_ID_GAPS, "message_id_gaps")
    _block_height = scalar(c.BLOCK_HEIGHT, "block_height")
    _block_timestamp = scalar(c.BLOCK_TIMESTAMP, "block_timestamp")
    _trades_duplicate = scalar(c.TRADES_DUPLICATE, "trades_duplicate")
    _scrape_duration_family = scalar(c.SCRAPE_DURATION, "_scrape_duration")
    _scrape_size_family = scalar(c.SCRAPE_SIZE, "_scrape_size")

    @renders(c.BUILD_INFO)
    def _build_info(self, name: str, out: list[str], now: float) -> None:
        out.append(f'{name}{{version="{escape(self.version)}"}} 1\n')

    @renders(c.COMPONENT_UP)
    def _component_up(self, name: str, out: list[str], now: float) -> None:
        for component, up in self._components.items():
            probe = self._component_probes.get(component)
            value = (1 if probe(now) else 0) if probe is not None else up
            out.append(f'{name}{{component="{escape(component)}"}} {value}\n')

    @renders(c.READY)
    def _ready(self, name: str, out: list[str], now: float) -> None:
        probe = self._ready_probe
        out.append(f"{name} {1 if probe is not None and probe(now) else 0}\n")

    @renders(c.WS_CONNECTED)
    def _connected(self, name: str, out: list[str], now: float) -> None:
        by_label(out, name, "connection", sorted(self._links.items()))

    @renders(c.SUBSCRIPTIONS)
    def _subscriptions_family(self, name: str, out: list[str], now: float) -> None:
        labelled(out, name, ("channel", "state"), self._subscriptions)

    @renders(c.WS_ERRORS)
    def _ws_errors(self, name: str, out: list[str], now: float) -> None:
        by_label(out, name, "reason", self.ws_errors.items())

    @renders(c.CONNECTION_FAILURES)
    def _connection_failures_family(self, name: str, out: list[str], now: float) -> None:
        by_label(out, name, "reason", self._connection_failures.items())

    @renders(c.DISCONNECTS)
    def _disconnects_family(self, name: str, out: list[str], now: float) -> None:
        by_label(out, name, "code", self._disconnects.items())

    @renders(c.SUBSCRIPTION_FAILURES)
    def _subscription_failures_family(self, name: str, out: list[str], now: float) -> None:
        labelled(out, name, ("channel", "reason"), self._subscription_failures)

    @renders(c.PING_RTT)
    def _ping_rtt_family(self, name: str, out: list[str], now: float) -> None:
        self._ping_rtt.render(name, "", out)

    @renders(c.REST_REQUESTS)
    def _rest_requests_family(self, name: str, out: list[str], now: float) -> None:
        labelled(out, name, ("endpoint", "code"), self._rest_requests)

    @renders(c.REST_DURATION)
    def _rest_duration(self, name: str, out: list[str], now: float) -> None:
        for endpoint, histogram in sorted(self._rest_durations.items()):
            histogram.render(name, f'endpoint="{escape(endpoint)}"', out)

    @renders(c.LOOP_LAG)
    def _loop_lag(self, name: str, out: list[str], now: float) -> None:
        self.loop_lag.render(name, "", out)


#: Every class whose instances render catalog families: together they must cover the catalog exactly.
SOURCES: tuple[type[MetricSource], ...] = (
    Collector,
    ChannelTable,
    MarketTable,
    SubaccountTable,
    HeadsMetrics,
)
registry.check(SOURCES)


def _openmetrics_families() -> dict[str, tuple[str, str]]:
    """(family name, type) of each metric in OpenMetrics. A counter whose family name (without `_total`)
    is another metric's name (dydx_orderbook_crossed_total next to the gauge dydx_orderbook_crossed) is
    exposed as type `unknown` under its full name: same sample name, no clashing family."""
    names = {spec.name for spec in c.CATALOG}
    families: dict[str, tuple[str, str]] = {}
    for spec in c.CATALOG:
        if spec.kind == "counter" and spec.family in names:
            families[spec.name] = (spec.name, "unknown")
        else:
            families[spec.name] = (spec.family, spec.kind)
    return families


#: metric name → (OpenMetrics family name, OpenMetrics type).
OPENMETRICS_FAMILIES: dict[str, tuple[str, str]] = _openmetrics_families()


def _header(spec: c.MetricSpec, openmetrics: bool) -> str:
    if openmetrics:
        family, kind = OPENMETRICS_FAMILIES[spec.name]
        return f"# HELP {family} {spec.help}\n# TYPE {family} {kind}\n"
    kind = "gauge" if spec.kind == "info" else spec.kind
    return f"# HELP {spec.name} {spec.help}\n# TYPE {spec.name} {kind}\n"


class _CatalogAdapter:
    """The catalog as a prometheus_client collector, for callers of generate_latest(registry)."""

    def __init__(self, collector: Collector) -> None:
        self._collector = collector

    def collect(self) -> Iterable[Any]:
        return list(text_string_to_metric_families(self._collector.render_text()))


class _Collectors:
    def __init__(self, collectors: Sequence[PromCollector]) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Any]:
        for collector in self._collectors:
            yield from collector.collect()


class ExporterRegistry(CollectorRegistry):
    """The Collector's registry: the catalog (rendered fast by `render_async`) plus every other collector
    registered on it (process and GC metrics by default), rendered by prometheus_client."""

    def __init__(self, collector: Collector) -> None:
        super().__init__(auto_describe=False)
        self._catalog = collector
        self._others: list[PromCollector] = []
        super().register(_CatalogAdapter(collector))
        ProcessCollector(registry=self)
        PlatformCollector(registry=self)
        GCCollector(registry=self)

    def register(self, collector: PromCollector) -> None:
        super().register(collector)
        self._others.append(collector)

    def unregister(self, collector: PromCollector) -> None:
        super().unregister(collector)
        self._others.remove(collector)

    def _others_text(self, openmetrics: bool) -> str:
        others: Any = _Collectors(self._others)
        if openmetrics:
            body: bytes = generate_latest_openmetrics(others)  # type: ignore[no-untyped-call]
            return body.decode().removesuffix("# EOF\n")
        body = generate_latest(others)
        return body.decode()

    def render(self, openmetrics: bool = False) -> bytes:
        """The whole exposition in one go (tests, tools); the web server uses render_async."""
        started = time.perf_counter()
        body = self._catalog.render_text(openmetrics) + self._others_text(openmetrics)
        if openmetrics:
            body += "# EOF\n"
        data = body.encode()
        self._catalog.record_scrape(time.perf_counter() - started, len(data))
        return data

    async def render_async(self, openmetrics: bool = False) -> bytes:
        """The whole exposition, yielding to the event loop whenever a slice has held it RENDER_SLICE_S.

        Families are encoded as they are rendered, so no step at the end touches the whole body at once;
        the yield lets due I/O and timers (and the tasks they wake, the feed's read loop) in before the
        next slice (exporter.loop.let_io_in)."""
        started = time.perf_counter()
        parts: list[bytes] = []
        slice_start = started
        for family in self._catalog.render_families(openmetrics):
            parts.append(family.encode())
            if time.perf_counter() - slice_start > RENDER_SLICE_S:
                await let_io_in()
                slice_start = time.perf_counter()
        parts.append(self._others_text(openmetrics).encode())
        if openmetrics:
            parts.append(b"# EOF\n")
        data = b"".join(parts)
        self._catalog.record_scrape(time.perf_counter() - started, len(data))
        return data
