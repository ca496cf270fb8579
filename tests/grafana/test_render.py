"""The renderer's formatting matches Grafana's units and legends; it fails clearly without Prometheus."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from grafana import render
from grafana.build import DASHBOARDS_DIR
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


def test_the_readme_pictures_were_drawn_from_the_committed_dashboards():
    """docs/img/dashboards.sha256 is written by the renderer with the pictures: a dashboard changed since
    (or added, or removed) means the README shows something the dashboards no longer are."""
    img = DASHBOARDS_DIR.parents[1] / "docs" / "img"
    recorded = (img / render.STAMP_NAME).read_text(encoding="utf-8")
    dashboards = sorted(DASHBOARDS_DIR.glob("*.json"))
    assert recorded == render.stamp(dashboards), (
        "a dashboard changed since docs/img was drawn: run `make demo`, let it gather at least 10 minutes "
        "of data, then `make dashboards-render` and commit the pictures with docs/img/dashboards.sha256"
    )
    for path in dashboards:
        uid = json.loads(path.read_text(encoding="utf-8"))["uid"]
        assert (img / f"{uid}.png").is_file(), uid


def test_the_stamp_reads_like_sha256sum(tmp_path: Path):
    dashboard = tmp_path / "a.json"
    dashboard.write_bytes(b'{"uid": "a"}')
    digest = hashlib.sha256(b'{"uid": "a"}').hexdigest()
    assert render.stamp([dashboard]) == f"{digest}  grafana/dashboards/a.json\n"
