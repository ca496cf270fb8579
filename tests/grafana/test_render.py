"""The renderer's formatting matches Grafana's units and legends; it fails clearly without Prometheus."""

from __future__ import annotations

from pathlib import Path

from grafana import render
from grafana.render import Series, format_value, legend_text
from tests.helpers import free_port


def test_units_render_like_grafana():
    assert format_value(0.25, "percentunit") == "25%"
    assert format_value(0.0000042, "s") == "4.2 µs"
    assert format_value(0.0123, "s") == "12.3 ms"
    assert format_value(3 * 1024 * 1024, "bytes") == "3 MiB"
    assert format_value(2048, "Bps") == "2 KiB/s"
    assert format_value(1500, "cps") == "1.5K/s"
    assert format_value(67012.5, "currencyUSD") == "$67K"
    assert format_value(1141036, "none") == "1141036"
    # Grafana's custom units: a rate of dollars says so (not "$5K" for 5,000 dollars a second).
    assert format_value(5000, "count:USD/s") == "5K USD/s"
    assert format_value(0.52, "count:/s") == "0.52 /s"


def test_panel_min_interval_sets_the_step_and_aligns_the_range_as_grafana_does():
    window = render.Window(1000.0, 1130.0, 1.0)
    assert window.for_panel(None).step == 1.0
    bars = window.for_panel("1m")
    assert (bars.start, bars.end, bars.step) == (960.0, 1140.0, 60.0)


def test_legends_fill_label_placeholders():
    labels = {"__name__": "x", "market": "BTC-USD", "side": "buy"}
    assert legend_text("{{market}} {{ side }}", labels, "x") == "BTC-USD buy"
    assert legend_text("", labels, "x") == '{market="BTC-USD", side="buy"}'


def test_stacking_adds_series_on_shared_timestamps():
    stacked = render._stacked([Series("a", [1, 2], [1, 1]), Series("b", [2, 3], [5, 5])])
    assert [(s.times, s.values) for s in stacked] == [([1, 2], [1, 1]), ([1, 2, 3], [1, 6, 5])]


def test_unreachable_prometheus_is_an_error_not_a_traceback(tmp_path: Path, capsys):
    port = free_port()  # nobody listens on it
    code = render.main(["--prometheus", f"http://127.0.0.1:{port}", "--out", str(tmp_path)])
    assert code == 2
    assert "cannot render" in capsys.readouterr().err
