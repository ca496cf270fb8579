"""Per-channel counters (frames by type, updates, rejections, freshness, latency, processing time) and
their families. The router increments the fields of a channel's `ChannelMetrics` directly."""

from __future__ import annotations

from collections.abc import Sequence

from exporter.metrics import catalog as c
from exporter.metrics.histogram import Histogram, escape
from exporter.metrics.registry import MetricSource, per_row, renders
from exporter.protocol import channels as ch


class ChannelMetrics:
    """Counters of one channel label value."""

    __slots__ = (
        "invalid",
        "label",
        "last_message_at",
        "latency",
        "messages",
        "name",
        "processing",
        "unknown_fields",
        "updates",
    )

    def __init__(self, name: str, *, protocol_channel: bool) -> None:
        self.name = name
        self.label = f'channel="{escape(name)}"'
        # A protocol channel's frame types are counted from zero.
        types: Sequence[str] = ch.CHANNEL_FRAME_TYPES if protocol_channel else ()
        if name == c.NO_CHANNEL:
            types = (ch.T_CONNECTED, ch.T_ERROR)
        self.messages: dict[str, int] = dict.fromkeys(types, 0)
        self.invalid: dict[str, int] = dict.fromkeys(c.INVALID_REASONS, 0) if name != c.NO_CHANNEL else {}
        self.updates = 0
        #: Fields not in the protocol's shapes (exporter.state.schema).
        self.unknown_fields = 0
        self.last_message_at = 0.0
        spec = ch.CHANNELS.get(name)
        timed = spec is not None and spec.timed
        self.latency: Histogram | None = Histogram(c.FEED_LATENCY_BUCKETS) if timed else None
        self.processing: Histogram | None = Histogram(c.PROCESSING_BUCKETS) if protocol_channel else None


class ChannelTable(MetricSource):
    """Every channel label value: the subscribed channels (created at zero), `none`, `unknown`, and any
    other protocol channel once a frame of it arrives."""

    def __init__(self, channels: Sequence[str]) -> None:
        self._channels: dict[str, ChannelMetrics] = {}
        for name in channels:
            self.channel(name)
        self.no_channel = self._add(c.NO_CHANNEL, protocol_channel=False)
        self.unknown_channel = self._add(c.UNKNOWN_CHANNEL, protocol_channel=False)

    def channel(self, name: str) -> ChannelMetrics:
        """The metrics of a protocol channel (created at zero on first use); unknown names map to the
        bounded `unknown` channel."""
        metrics = self._channels.get(name)
        if metrics is None:
            if name not in ch.CHANNELS:
                return self.unknown_channel
            metrics = self._add(name, protocol_channel=True)
        return metrics

    def _add(self, name: str, *, protocol_channel: bool) -> ChannelMetrics:
        metrics = self._channels[name] = ChannelMetrics(name, protocol_channel=protocol_channel)
        return metrics

    @renders(c.WS_MESSAGES)
    def _messages(self, name: str, out: list[str], now: float) -> None:
        for cm in self._channels.values():
            for frame_type, count in cm.messages.items():
                out.append(f'{name}{{{cm.label},type="{frame_type}"}} {count}\n')

    @renders(c.MESSAGES_INVALID)
    def _invalid(self, name: str, out: list[str], now: float) -> None:
        for cm in self._channels.values():
            for reason, count in cm.invalid.items():
                out.append(f'{name}{{{cm.label},reason="{reason}"}} {count}\n')

    @renders(c.FEED_LATENCY)
    def _latency(self, name: str, out: list[str], now: float) -> None:
        for cm in self._channels.values():
            if cm.latency is not None:
                cm.latency.render(name, cm.label, out)

    @renders(c.PROCESSING)
    def _processing(self, name: str, out: list[str], now: float) -> None:
        for cm in self._channels.values():
            if cm.processing is not None:
                cm.processing.render(name, cm.label, out)

    def _protocol(self) -> list[ChannelMetrics]:
        return [cm for cm in self._channels.values() if cm.processing is not None]

    _updates = per_row(c.UPDATES, _protocol, lambda cm: cm.updates)
    _last_message = per_row(c.LAST_MESSAGE, _protocol, lambda cm: cm.last_message_at)
    _unknown_fields = per_row(c.SCHEMA_UNKNOWN, _protocol, lambda cm: cm.unknown_fields)
