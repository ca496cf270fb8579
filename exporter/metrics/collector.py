"""The hot-path counting and its exposition.

Counting happens in plain ints and floats on pre-bound objects (`ChannelMetrics` per channel,
`MarketMetrics` per market): an update costs tens of nanoseconds, never a `.labels()` lookup. At scrape time
the exposition text (Prometheus 0.0.4 or OpenMetrics 1.0) is rendered straight from those objects, family by
family, yielding to the event loop between slices so a scrape of the full catalog for hundreds of markets
never holds up frame processing for more than a couple of milliseconds.

`Collector.registry` is a prometheus_client CollectorRegistry too (process and GC collectors, anything
else registered on it, and the catalog through an adapter), so `generate_latest(collector.registry)` keeps
working; the web server uses the registry's faster `render_async`.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_latest_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector as PromCollector

from exporter.loop import let_io_in
from exporter.metrics import catalog as c
from exporter.protocol import channels as ch

#: Frame types counted per protocol channel, created at zero.
CHANNEL_FRAME_TYPES = (
    ch.T_SUBSCRIBED,
    ch.T_UNSUBSCRIBED,
    ch.T_CHANNEL_DATA,
    ch.T_CHANNEL_BATCH_DATA,
    ch.T_ERROR,
)
#: A render yields to the event loop after holding it this long (a family is never split, so a slice can
#: run over by one family: the per-market ones take ≈ 0.2 ms at 267 markets).
RENDER_SLICE_S = 0.0005


class BookReadout(Protocol):
    """What the exposition reads from an order book (exporter.state.book.Book)."""

    crossed: bool
    crossed_total: int
    #: Wall-clock time of the latest snapshot or update (0.0 before the first).
    updated_at: float

    def crossed_seconds(self, now: float) -> float: ...

    def levels(self) -> tuple[int, int]: ...

    def best(self) -> tuple[float | None, float | None]: ...


def fmt(value: float) -> str:
    """A sample value as both exposition formats spell it."""
    if type(value) is int:
        return str(value)
    if value != value:
        return "NaN"
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    return repr(float(value))


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """One observation; a negative value (an exchange clock ahead of ours) counts as zero."""
        if value > 0.0:
            self.counts[bisect_left(self.bounds, value)] += 1
            self.sum += value
        else:
            self.counts[0] += 1

    @property
    def count(self) -> int:
        return sum(self.counts)

    def render(self, name: str, labels: str, out: list[str]) -> None:
        """`labels` is the pre-formatted label text without braces ('' for none)."""
        sep = "," if labels else ""
        cumulative = 0
        counts = self.counts
        for i, bound in enumerate(self.bounds):
            cumulative += counts[i]
            out.append(f'{name}_bucket{{{labels}{sep}le="{fmt(bound)}"}} {cumulative}\n')
        cumulative += counts[-1]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {cumulative}\n')
        braces = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_count{braces} {cumulative}\n")
        out.append(f"{name}_sum{braces} {fmt(self.sum)}\n")


class ChannelMetrics:
    """Counters of one channel label value. The processor increments the fields directly."""

    __slots__ = (
        "invalid",
        "label",
        "last_message_at",
        "latency",
        "messages",
        "name",
        "processing",
        "updates",
    )

    def __init__(self, name: str, *, protocol_channel: bool) -> None:
        self.name = name
        self.label = f'channel="{escape(name)}"'
        types: Sequence[str] = CHANNEL_FRAME_TYPES if protocol_channel else ()
        if name == c.NO_CHANNEL:
            types = (ch.T_CONNECTED, ch.T_ERROR)
        self.messages: dict[str, int] = dict.fromkeys(types, 0)
        self.invalid: dict[str, int] = dict.fromkeys(c.INVALID_REASONS, 0) if name != c.NO_CHANNEL else {}
        self.updates = 0
        self.last_message_at = 0.0
        spec = ch.CHANNELS.get(name)
        timed = spec is not None and spec.timed
        self.latency: Histogram | None = Histogram(c.FEED_LATENCY_BUCKETS) if timed else None
        self.processing: Histogram | None = Histogram(c.PROCESSING_BUCKETS) if protocol_channel else None


class MarketMetrics:
    """Everything exported per market. Groups of series appear as the market is listed (info, oracle),
    subscribed to trades (`has_trades`) or to the order book (`book` set). The `*_at` fields are the
    wall-clock time of the market's latest frame per channel (0.0: none yet), stored on the hot path."""

    __slots__ = (
        "book",
        "candles_at",
        "has_trades",
        "label",
        "last_trade_price",
        "listed",
        "notional",
        "oracle_at",
        "oracle_price",
        "resyncs",
        "status",
        "ticker",
        "trades",
        "trades_at",
        "volume",
    )

    def __init__(self, ticker: str) -> None:
        self.ticker = ticker
        self.label = f'market="{escape(ticker)}"'
        self.listed = False
        self.status = "UNKNOWN"
        self.oracle_price: float | None = None
        self.has_trades = False
        self.trades = [0, 0]  # index 0 buy, 1 sell (taker side)
        self.volume = [0.0, 0.0]
        self.notional = [0.0, 0.0]
        self.last_trade_price: float | None = None
        self.book: BookReadout | None = None
        self.resyncs: dict[str, int] = dict.fromkeys(c.RESYNC_REASONS, 0)
        self.trades_at = 0.0
        self.oracle_at = 0.0
        self.candles_at = 0.0


class SubaccountMetrics:
    """Everything exported per subaccount named by --subaccounts (the label value is that id)."""

    __slots__ = ("equity", "fills", "free_collateral", "label", "open_orders", "open_positions", "sub_id")

    def __init__(self, sub_id: str) -> None:
        self.sub_id = sub_id
        self.label = f'subaccount="{escape(sub_id)}"'
        self.equity: float | None = None
        self.free_collateral: float | None = None
        self.open_positions = 0
        self.open_orders = 0
        self.fills = [0, 0]  # index 0 buy, 1 sell


class Collector:
    """FeedObserver for the feed's own health, and the counters the Processor updates on the hot path."""

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
        self._channels: dict[str, ChannelMetrics] = {}
        for name in channels:
            self.channel(name)
        self._none_channel = self._add_channel(c.NO_CHANNEL, protocol_channel=False)
        self._unknown_channel = self._add_channel(c.UNKNOWN_CHANNEL, protocol_channel=False)
        self._markets: dict[str, MarketMetrics] = {}
        self._subaccounts: dict[str, SubaccountMetrics] = {s: SubaccountMetrics(s) for s in subaccounts}
        # Hot-path globals, incremented by the Processor.
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
        self.registry = ExporterRegistry(self)

    # --- pre-bound objects for the hot path -----------------------------------------------------------
    def channel(self, name: str) -> ChannelMetrics:
        """The metrics of a protocol channel (created at zero on first use); unknown names map to the
        bounded `unknown` channel."""
        metrics = self._channels.get(name)
        if metrics is None:
            if name not in ch.ALL_CHANNELS:
                return self._unknown_channel
            metrics = self._add_channel(name, protocol_channel=True)
        return metrics

    @property
    def no_channel(self) -> ChannelMetrics:
        return self._none_channel

    @property
    def unknown_channel(self) -> ChannelMetrics:
        return self._unknown_channel

    def _add_channel(self, name: str, *, protocol_channel: bool) -> ChannelMetrics:
        metrics = ChannelMetrics(name, protocol_channel=protocol_channel)
        self._channels[name] = metrics
        return metrics

    def market(self, ticker: str) -> MarketMetrics:
        metrics = self._markets.get(ticker)
        if metrics is None:
            metrics = self._markets[ticker] = MarketMetrics(ticker)
        return metrics

    def existing_market(self, ticker: str) -> MarketMetrics | None:
        return self._markets.get(ticker)

    @property
    def markets(self) -> Mapping[str, MarketMetrics]:
        """Every tracked market by ticker: a live read-only view for hot-path lookups (the same object for
        the collector's lifetime)."""
        return self._markets

    def forget_market(self, ticker: str) -> None:
        """Remove every series of the market (delisted or unsubscribed)."""
        self._markets.pop(ticker, None)

    def subaccount(self, sub_id: str) -> SubaccountMetrics | None:
        """The metrics of a configured subaccount; None for any other id (the label stays bounded)."""
        return self._subaccounts.get(sub_id)

    def market_tickers(self) -> list[str]:
        return list(self._markets)

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
        channels = list(self._channels.values())
        markets = sorted(self._markets.values(), key=lambda m: m.ticker)
        for spec in c.CATALOG:
            out: list[str] = [_header(spec, openmetrics)]
            self._samples(spec, channels, markets, now, out)
            yield "".join(out)

    def render_text(self, openmetrics: bool = False) -> str:
        return "".join(self.render_families(openmetrics))

    def _samples(
        self,
        spec: c.MetricSpec,
        channels: list[ChannelMetrics],
        markets: list[MarketMetrics],
        now: float,
        out: list[str],
    ) -> None:
        name = spec.name
        add = out.append
        if spec is c.BUILD_INFO:
            add(f'{name}{{version="{escape(self.version)}"}} 1\n')
        elif spec is c.COMPONENT_UP:
            for component, up in self._components.items():
                probe = self._component_probes.get(component)
                value = (1 if probe(now) else 0) if probe is not None else up
                add(f'{name}{{component="{escape(component)}"}} {value}\n')
        elif spec is c.READY:
            probe = self._ready_probe
            add(f"{name} {1 if probe is not None and probe(now) else 0}\n")
        elif spec is c.WS_CONNECTED:
            for link, up in sorted(self._links.items()):
                add(f'{name}{{connection="{escape(link)}"}} {up}\n')
        elif spec is c.SUBSCRIPTIONS:
            _labelled(out, name, ("channel", "state"), self._subscriptions)
        elif spec is c.WS_MESSAGES:
            for cm in channels:
                for frame_type, count in cm.messages.items():
                    add(f'{name}{{{cm.label},type="{frame_type}"}} {count}\n')
        elif spec is c.WS_RECEIVED_BYTES:
            add(f"{name} {self.received_bytes}\n")
        elif spec is c.UPDATES:
            for cm in channels:
                if cm.processing is not None:
                    add(f"{name}{{{cm.label}}} {cm.updates}\n")
        elif spec is c.LAST_MESSAGE:
            for cm in channels:
                if cm.processing is not None:
                    add(f"{name}{{{cm.label}}} {fmt(cm.last_message_at)}\n")
        elif spec is c.WS_ERRORS:
            for reason, count in self.ws_errors.items():
                add(f'{name}{{reason="{escape(reason)}"}} {count}\n')
        elif spec is c.MESSAGES_INVALID:
            for cm in channels:
                for reason, count in cm.invalid.items():
                    add(f'{name}{{{cm.label},reason="{reason}"}} {count}\n')
        elif spec is c.CONNECTION_FAILURES:
            for reason, count in self._connection_failures.items():
                add(f'{name}{{reason="{escape(reason)}"}} {count}\n')
        elif spec is c.DISCONNECTS:
            for code, count in self._disconnects.items():
                add(f'{name}{{code="{escape(code)}"}} {count}\n')
        elif spec is c.RECONNECTS:
            add(f"{name} {self._reconnects}\n")
        elif spec is c.MESSAGE_ID_GAPS:
            add(f"{name} {self.message_id_gaps}\n")
        elif spec is c.SUBSCRIPTION_FAILURES:
            _labelled(out, name, ("channel", "reason"), self._subscription_failures)
        elif spec is c.PING_RTT:
            self._ping_rtt.render(name, "", out)
        elif spec is c.FEED_LATENCY:
            for cm in channels:
                if cm.latency is not None:
                    cm.latency.render(name, cm.label, out)
        elif spec is c.PROCESSING:
            for cm in channels:
                if cm.processing is not None:
                    cm.processing.render(name, cm.label, out)
        elif spec is c.BLOCK_HEIGHT:
            add(f"{name} {self.block_height}\n")
        elif spec is c.BLOCK_TIMESTAMP:
            add(f"{name} {fmt(self.block_timestamp)}\n")
        elif spec is c.MARKET_INFO:
            for m in markets:
                if m.listed:
                    add(f'{name}{{{m.label},status="{escape(m.status)}"}} 1\n')
        elif spec is c.ORACLE_PRICE:
            for m in markets:
                if m.oracle_price is not None:
                    add(f"{name}{{{m.label}}} {fmt(m.oracle_price)}\n")
        elif spec is c.TRADES:
            _per_side(out, name, markets, lambda m: m.trades)
        elif spec is c.TRADE_VOLUME:
            _per_side(out, name, markets, lambda m: m.volume)
        elif spec is c.TRADE_NOTIONAL:
            _per_side(out, name, markets, lambda m: m.notional)
        elif spec is c.TRADES_DUPLICATE:
            add(f"{name} {self.trades_duplicate}\n")
        elif spec is c.LAST_TRADE_PRICE:
            for m in markets:
                if m.last_trade_price is not None:
                    add(f"{name}{{{m.label}}} {fmt(m.last_trade_price)}\n")
        else:
            self._book_samples(spec, markets, now, out)

    def _book_samples(
        self, spec: c.MetricSpec, markets: list[MarketMetrics], now: float, out: list[str]
    ) -> None:
        name = spec.name
        add = out.append
        if spec is c.BOOK_CROSSED:
            for m in markets:
                if m.book is not None:
                    add(f"{name}{{{m.label}}} {1 if m.book.crossed else 0}\n")
        elif spec is c.BOOK_CROSSED_EPISODES:
            for m in markets:
                if m.book is not None:
                    add(f"{name}{{{m.label}}} {m.book.crossed_total}\n")
        elif spec is c.BOOK_CROSSED_SECONDS:
            for m in markets:
                if m.book is not None:
                    add(f"{name}{{{m.label}}} {fmt(m.book.crossed_seconds(now))}\n")
        elif spec is c.BOOK_BEST_PRICE:
            for m in markets:
                if m.book is not None:
                    bid, ask = m.book.best()
                    if bid is not None:
                        add(f'{name}{{{m.label},side="bid"}} {fmt(bid)}\n')
                    if ask is not None:
                        add(f'{name}{{{m.label},side="ask"}} {fmt(ask)}\n')
        elif spec is c.BOOK_SPREAD_RATIO:
            for m in markets:
                if m.book is not None:
                    bid, ask = m.book.best()
                    if bid is not None and ask is not None:
                        add(f"{name}{{{m.label}}} {fmt((ask - bid) / ((ask + bid) / 2.0))}\n")
        elif spec is c.BOOK_LEVELS:
            for m in markets:
                if m.book is not None:
                    bids, asks = m.book.levels()
                    add(f'{name}{{{m.label},side="bid"}} {bids}\n{name}{{{m.label},side="ask"}} {asks}\n')
        elif spec is c.BOOK_RESYNCS:
            for m in markets:
                if m.book is not None:
                    for reason, count in m.resyncs.items():
                        add(f'{name}{{{m.label},reason="{reason}"}} {count}\n')
        elif spec is c.MARKET_LAST_UPDATE:
            for m in markets:
                label = m.label
                book = m.book
                for channel, at in (
                    (ch.ORDERBOOK, 0.0 if book is None else book.updated_at),
                    (ch.TRADES, m.trades_at),
                    (ch.CANDLES, m.candles_at),
                    (ch.MARKETS, m.oracle_at),
                ):
                    if at:
                        add(f'{name}{{{label},channel="{channel}"}} {fmt(at)}\n')
        elif spec in _SUBACCOUNT_SPECS:
            self._subaccount_samples(spec, out)
        elif spec is c.REST_REQUESTS:
            _labelled(out, name, ("endpoint", "code"), self._rest_requests)
        elif spec is c.REST_DURATION:
            for endpoint, histogram in sorted(self._rest_durations.items()):
                histogram.render(name, f'endpoint="{escape(endpoint)}"', out)
        elif spec is c.LOOP_LAG:
            self.loop_lag.render(name, "", out)
        elif spec is c.SCRAPE_DURATION:
            out.append(f"{name} {fmt(self._scrape_duration)}\n")
        elif spec is c.SCRAPE_SIZE:
            out.append(f"{name} {self._scrape_size}\n")
        else:  # pragma: no cover - a catalog entry without a renderer is a programming error
            raise AssertionError(f"no renderer for {spec.name}")

    def _subaccount_samples(self, spec: c.MetricSpec, out: list[str]) -> None:
        name = spec.name
        add = out.append
        for sub in sorted(self._subaccounts.values(), key=lambda s: s.sub_id):
            if spec is c.SUBACCOUNT_EQUITY:
                if sub.equity is not None:
                    add(f"{name}{{{sub.label}}} {fmt(sub.equity)}\n")
            elif spec is c.SUBACCOUNT_FREE_COLLATERAL:
                if sub.free_collateral is not None:
                    add(f"{name}{{{sub.label}}} {fmt(sub.free_collateral)}\n")
            elif spec is c.SUBACCOUNT_OPEN_POSITIONS:
                add(f"{name}{{{sub.label}}} {sub.open_positions}\n")
            elif spec is c.SUBACCOUNT_OPEN_ORDERS:
                add(f"{name}{{{sub.label}}} {sub.open_orders}\n")
            else:
                buy, sell = c.TRADE_SIDE_LABELS
                add(f'{name}{{{sub.label},side="{buy}"}} {sub.fills[0]}\n')
                add(f'{name}{{{sub.label},side="{sell}"}} {sub.fills[1]}\n')


_SUBACCOUNT_SPECS = frozenset(
    {
        c.SUBACCOUNT_EQUITY,
        c.SUBACCOUNT_FREE_COLLATERAL,
        c.SUBACCOUNT_OPEN_POSITIONS,
        c.SUBACCOUNT_OPEN_ORDERS,
        c.SUBACCOUNT_FILLS,
    }
)


def _header(spec: c.MetricSpec, openmetrics: bool) -> str:
    if openmetrics:
        family, kind = c.OPENMETRICS_FAMILIES[spec.name]
        return f"# HELP {family} {spec.help}\n# TYPE {family} {kind}\n"
    kind = "gauge" if spec.kind == "info" else spec.kind
    return f"# HELP {spec.name} {spec.help}\n# TYPE {spec.name} {kind}\n"


def _labelled(
    out: list[str], name: str, labels: tuple[str, str], table: Mapping[tuple[str, str], int]
) -> None:
    first, second = labels
    for (a, b), value in sorted(table.items()):
        out.append(f'{name}{{{first}="{escape(a)}",{second}="{escape(b)}"}} {value}\n')


def _per_side(
    out: list[str], name: str, markets: list[MarketMetrics], values: Callable[[MarketMetrics], list[Any]]
) -> None:
    buy, sell = c.TRADE_SIDE_LABELS
    for m in markets:
        if m.has_trades:
            v = values(m)
            label = m.label
            out.append(
                f'{name}{{{label},side="{buy}"}} {fmt(v[0])}\n{name}{{{label},side="{sell}"}} {fmt(v[1])}\n'
            )


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
