"""The tables that must agree are checked when the code is imported: every metric of the catalog has
exactly one renderer (and every renderer a metric), and every channel of the ChannelSpec table a handler
(and every handler a channel)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from exporter.metrics import catalog as c
from exporter.metrics import registry
from exporter.metrics.collector import SOURCES, Collector
from exporter.metrics.registry import MetricSource, per_row, renders, scalar
from exporter.protocol import channels as ch
from exporter.state.router import HANDLERS, check_handlers

EXTRA = c.MetricSpec("dydx_test_extra", "gauge", "A metric nobody renders.")


def test_the_sources_render_the_catalog_exactly() -> None:
    registry.check(SOURCES)
    rendered = [spec for source in SOURCES for spec in source.RENDERS]
    assert sorted(s.name for s in rendered) == sorted(s.name for s in c.CATALOG)
    # and the Collector wires every one of them
    collector = Collector(version="t", channels=ch.DEFAULT_CHANNELS)
    assert collector.render_text().count("# TYPE ") == len(c.CATALOG)


def test_a_metric_without_a_renderer_is_refused() -> None:
    with pytest.raises(RuntimeError, match="dydx_test_extra: no renderer"):
        registry.check(SOURCES, (*c.CATALOG, EXTRA))


def test_a_renderer_without_a_metric_is_refused() -> None:
    class Stray(MetricSource):
        @renders(EXTRA)
        def _extra(self, name: str, out: list[str], now: float) -> None:
            out.append(f"{name} 1\n")

    with pytest.raises(RuntimeError, match="dydx_test_extra: rendered but not in the catalog"):
        registry.check((*SOURCES, Stray))


def test_a_metric_rendered_twice_is_refused() -> None:
    class Twice(MetricSource):
        @renders(c.BLOCK_HEIGHT)
        def _height(self, name: str, out: list[str], now: float) -> None:
            out.append(f"{name} 1\n")

    with pytest.raises(RuntimeError, match="dydx_block_height: rendered by Collector, Twice"):
        registry.check((*SOURCES, Twice))


def test_a_scalar_line_renders_its_attribute_and_counts_as_a_renderer() -> None:
    class One(MetricSource):
        _extra = scalar(EXTRA, "value")

        def __init__(self, value: float) -> None:
            self.value = value

    assert One.RENDERS == {EXTRA: "_extra"}
    for value, text in ((7, "7"), (2.5, "2.5"), (float("nan"), "NaN")):
        out: list[str] = []
        One(value).renderers()[EXTRA]("dydx_test_extra", out, 0.0)
        assert out == [f"dydx_test_extra {text}\n"]
    with pytest.raises(RuntimeError, match="dydx_test_extra: rendered but not in the catalog"):
        registry.check((*SOURCES, One))


def test_a_per_row_line_renders_each_known_row_under_its_label() -> None:
    class Row:
        def __init__(self, label: str, value: float | None) -> None:
            self.label, self.value = label, value

    class Table(MetricSource):
        def __init__(self, rows: list[Row]) -> None:
            self.rows = rows

        def _rows(self) -> list[Row]:
            return self.rows

        _extra = per_row(EXTRA, _rows, lambda row: row.value)

    assert Table.RENDERS == {EXTRA: "_extra"}
    out: list[str] = []
    table = Table([Row('m="a"', 3), Row('m="b"', None), Row('m="c"', 0.5)])
    table.renderers()[EXTRA]("dydx_test_extra", out, 0.0)
    assert out == ['dydx_test_extra{m="a"} 3\n', 'dydx_test_extra{m="c"} 0.5\n']


def test_the_check_runs_at_import() -> None:
    """A catalog entry added without its renderer stops the exporter from importing at all."""
    code = (
        "from exporter.metrics import catalog as c\n"
        "c.CATALOG = (*c.CATALOG, c.MetricSpec('dydx_test_extra', 'gauge', 'x'))\n"
        "import exporter.metrics.collector\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "dydx_test_extra: no renderer" in result.stderr


def test_every_channel_has_a_handler_and_every_handler_a_channel() -> None:
    check_handlers()
    assert {spec.handler for spec in ch.CHANNELS.values()} == set(HANDLERS)
    with pytest.raises(RuntimeError, match="extra"):
        check_handlers((*HANDLERS, "extra"))
    with pytest.raises(RuntimeError, match="orderbook"):
        check_handlers(name for name in HANDLERS if name != "orderbook")
