"""Render every panel of every dashboard to PNG with matplotlib, from the dashboards' own queries.

    python -m grafana.render --prometheus http://127.0.0.1:9090 --out docs/img [--range 30m] [--panels]

Where Grafana cannot run (CI, no Docker), this shows what each panel would show: the same PromQL, with the
variables substituted as a freshly opened dashboard would (All for job/instance, the first market), the
same legends and units. It writes one PNG per dashboard laid out on Grafana's grid (OUT/<uid>.png, the
README's images) and, with --panels, one PNG per panel (OUT/<uid>/<id>-<title>.png); it lists the panels
that had no data. Beside the pictures, OUT/dashboards.sha256 records the sha256 of each dashboard JSON they
were drawn from (`sha256sum -c` reads it): a test fails when a dashboard changes and the README's pictures
do not.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from grafana.build import DASHBOARDS_DIR
from grafana.promapi import PrometheusAPI, PrometheusError, resolve_variables
from grafana.queries import TimeContext, panels, step_for, substitute

GRID_COLUMNS = 24
#: Inches per grid column and per grid row unit on the composite image.
COLUMN_INCHES = 0.85
ROW_INCHES = 0.42
COLORS = ("#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0", "#508642")
NAMED_COLORS = {
    "green": "#73bf69",
    "red": "#f2495c",
    "orange": "#ff9830",
    "yellow": "#fade2a",
    "blue": "#5794f2",
    "purple": "#b877d9",
}
BACKGROUND = "#181b1f"
FOREGROUND = "#ccccdc"


# Values ------------------------------------------------------------------------------------------------


def format_value(value: float, unit: str) -> str:
    """A compact rendering of `value` in a Grafana unit (the common ones; others fall back to `short`)."""
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    if unit == "percent":
        return f"{value:.3g}%"
    if unit == "s":
        magnitude = abs(value)
        if magnitude and magnitude < 1e-3:
            return f"{value * 1e6:.3g} µs"
        if magnitude and magnitude < 1:
            return f"{value * 1e3:.3g} ms"
        return f"{value:.3g} s"
    if unit in ("bytes", "Bps"):
        suffix = "/s" if unit == "Bps" else ""
        for scale, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.3g} {name}{suffix}"
        return f"{value:.3g} B{suffix}"
    if unit == "currencyUSD":
        return "$" + _short(value)
    # Grafana's custom units: `count:USD/s` scales like a count and appends " USD/s".
    kind, _, text = unit.partition(":")
    if kind == "count":
        return f"{_short(value)} {text}".rstrip()
    if kind == "suffix":
        return f"{value:.3g}{text}"
    if kind in ("prefix", "currency"):
        return f"{text}{_short(value)}"
    if unit in ("cps", "ops", "reqps"):
        return _short(value) + "/s"
    if unit == "none" and float(value).is_integer() and abs(value) < 1e12:
        return str(int(value))
    return _short(value)


def _short(value: float) -> str:
    for scale, name in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{name}"
    return f"{value:.3g}"


def legend_text(legend: str, labels: Mapping[str, str], expr: str) -> str:
    if not legend:
        shown = {k: v for k, v in labels.items() if k != "__name__"}
        return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(shown.items())) + "}" if shown else expr[:60]
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), legend).strip()


# Data --------------------------------------------------------------------------------------------------


@dataclass
class Series:
    name: str
    times: list[float]
    values: list[float]


@dataclass
class PanelData:
    panel: dict[str, Any]
    series: list[Series] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)  # table panels
    errors: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.series and not self.rows


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    scrape_interval: float
    #: A panel's min interval (Grafana's query option `interval`): its $__interval never goes below it.
    min_step: float = 0.0

    @property
    def step(self) -> float:
        return max(self.min_step, step_for(self.end - self.start, self.scrape_interval))

    def for_panel(self, min_interval: str | None) -> Window:
        """The window as Grafana queries a panel with this min interval (query option `interval`; the
        event bars have 1m): $__interval and the step never go below it, and start and end are aligned
        to the step (end rounded up, so the newest bar covers now)."""
        panel = dataclasses.replace(self, min_step=parse_duration(min_interval)) if min_interval else self
        step = panel.step
        return dataclasses.replace(
            panel,
            start=math.floor(self.start / step) * step,
            end=math.ceil(self.end / step) * step,
            min_step=step,
        )

    @property
    def time(self) -> TimeContext:
        return TimeContext(
            interval=self.step, scrape_interval=self.scrape_interval, range=self.end - self.start
        )


def fetch_panel(
    api: PrometheusAPI, panel: dict[str, Any], variables: Mapping[str, str], window: Window
) -> PanelData:
    data = PanelData(panel)
    window = window.for_panel(panel.get("interval"))
    for target in panel.get("targets", []):
        if target.get("hide"):
            continue
        expr = substitute(target["expr"], variables, window.time)
        legend = target.get("legendFormat", "")
        try:
            if panel.get("type") == "table":
                for sample in api.query(expr, window.end):
                    labels = {k: v for k, v in sample["metric"].items() if k != "__name__"}
                    data.rows.append({**labels, "Value": sample["value"][1]})
                continue
            for result in api.query_range(expr, window.start, window.end, window.step):
                data.series.append(
                    Series(
                        legend_text(legend, result["metric"], expr),
                        [float(t) for t, _ in result["values"]],
                        [float(v) for _, v in result["values"]],
                    )
                )
        except Exception as exc:  # one broken query must not hide the other panels
            data.errors.append(f"{target.get('refId')}: {exc}")
    data.series.sort(key=lambda s: s.name)
    return data


# Drawing -----------------------------------------------------------------------------------------------


def _style(ax: Axes, title: str) -> None:
    ax.set_facecolor(BACKGROUND)
    ax.set_title(title, color=FOREGROUND, fontsize=9, loc="left")
    ax.tick_params(colors=FOREGROUND, labelsize=7)
    for spine in ax.spines.values():
        spine.set_color("#444")


def _unit(panel: Mapping[str, Any]) -> str:
    return str(panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short"))


def _whole_numbers(panel: Mapping[str, Any]) -> bool:
    """decimals 0: Grafana puts ticks on whole numbers only (no 0.5 file descriptors)."""
    return bool(panel.get("fieldConfig", {}).get("defaults", {}).get("decimals") == 0)


def _time_axis(ax: Axes, window: Window) -> None:
    """Ticks relative to now, like Grafana's "Last N minutes" (seconds below five minutes)."""
    span = window.end - window.start
    scale, suffix = (1.0, "s") if span <= 300 else (60.0, "m")
    ticks = [window.start + span * i / 5 for i in range(6)]
    labels = [f"-{(window.end - t) / scale:.0f}{suffix}" if t < window.end else "now" for t in ticks]
    ax.set_xticks(ticks, labels)
    ax.set_xlim(window.start, window.end)


def _stacked(series: Sequence[Series]) -> list[Series]:
    """Cumulative sums over the shared timestamps, as Grafana stacks (a missing point counts as 0)."""
    totals: dict[float, float] = {}
    out = []
    for one in series:
        points = dict(zip(one.times, one.values, strict=True))
        times = sorted(set(totals) | set(points))
        totals = {t: totals.get(t, 0.0) + points.get(t, 0.0) for t in times}
        out.append(Series(one.name, times, [totals[t] for t in times]))
    return out


def draw_timeseries(ax: Axes, data: PanelData, window: Window) -> None:
    unit = _unit(data.panel)
    custom = data.panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
    bars = custom.get("drawStyle") == "bars"
    stacked = custom.get("stacking", {}).get("mode") == "normal"
    shown = data.series[:12]
    lines = _stacked(shown) if stacked else shown
    below: Series | None = None
    for index, series in enumerate(lines):
        color = COLORS[index % len(COLORS)]
        base = [0.0] * len(series.times)
        if stacked and below is not None:
            previous = dict(zip(below.times, below.values, strict=True))
            base = [previous.get(t, 0.0) for t in series.times]
        if bars:
            # A bar stands for the interval that ends at its timestamp, as Grafana draws it.
            heights = [top - bottom for top, bottom in zip(series.values, base, strict=True)]
            ax.bar(
                series.times,
                heights,
                bottom=base,
                width=-window.step * 0.9,
                align="edge",
                color=color,
                label=series.name,
                alpha=0.85,
            )
        else:
            ax.plot(series.times, series.values, color=color, linewidth=1.2, label=series.name)
            if stacked:
                ax.fill_between(series.times, base, series.values, color=color, alpha=0.25)
        if stacked:
            below = series
    if data.series:
        legend = ax.legend(
            fontsize=6, loc="upper left", facecolor=BACKGROUND, labelcolor=FOREGROUND, framealpha=0.6
        )
        legend.get_frame().set_edgecolor("#444")
    if _whole_numbers(data.panel):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]), top=max(1.0, ax.get_ylim()[1]))
    if unit in ("none", "short") and all(abs(v) < 1e4 for s in shown for v in s.values if math.isfinite(v)):
        # Prices and the like: as many digits as the ticks need (0.3512, 0.3514), never "0.35" five times.
        ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
    else:
        ax.yaxis.set_major_formatter(lambda value, _pos: format_value(value, unit))
    _time_axis(ax, window)
    ax.grid(color="#333", linewidth=0.5)


def draw_stat(ax: Axes, data: PanelData, window: Window) -> None:
    unit = _unit(data.panel)
    ax.set_xticks([])
    ax.set_yticks([])
    no_value = data.panel.get("fieldConfig", {}).get("defaults", {}).get("noValue", "No data")
    latest = [s.values[-1] for s in data.series if s.values]
    text = format_value(latest[0], unit) if latest else str(no_value)
    color = _threshold_color(data.panel, latest[0]) if latest else "#555"
    ax.set_facecolor(color)
    for series in data.series[:1]:
        ax.fill_between(series.times, series.values, color="white", alpha=0.15)
        ax.set_xlim(window.start, window.end)
        low, high = min(series.values), max(series.values)
        ax.set_ylim(low - 0.1 * abs(low) - 1e-9, high * 3 + 1e-9 if high > 0 else high + 1)
    ax.text(0.5, 0.45, text, transform=ax.transAxes, ha="center", va="center", fontsize=18, color="white")


def _threshold_color(panel: Mapping[str, Any], value: float) -> str:
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    color = "green"
    for step in steps:
        if step.get("value") is None or value >= step["value"]:
            color = step.get("color", color)
    return NAMED_COLORS.get(color, color)


def draw_states(ax: Axes, data: PanelData, window: Window) -> None:
    options: dict[str, Any] = {}
    for mapping in data.panel.get("fieldConfig", {}).get("defaults", {}).get("mappings", []):
        options.update(mapping.get("options", {}))
    for row, series in enumerate(data.series[:12]):
        for t, v in zip(series.times, series.values, strict=True):
            option = options.get(f"{v:g}", {})
            color = NAMED_COLORS.get(option.get("color", ""), option.get("color", "#1f78c1"))
            ax.barh(row, window.step, left=t - window.step / 2, color=color, height=0.8)
    # Names inside the lanes (long label sets would not fit in the margin of a small panel), white on a
    # dark label box so that they read on green and red alike; the font shrinks as lanes get thinner.
    ax.set_yticks([])
    lanes = min(len(data.series), 12)
    size = 7 if lanes <= 6 else 6
    for row, series in enumerate(data.series[:12]):
        ax.text(
            window.start,
            row,
            f" {series.name} ",
            va="center",
            ha="left",
            color="white",
            fontsize=size,
            bbox={"facecolor": BACKGROUND, "alpha": 0.75, "edgecolor": "none", "pad": 1.0},
        )
    ax.set_ylim(-0.5, max(lanes, 1) - 0.5)
    ax.invert_yaxis()  # first series on top, as Grafana lists them
    _time_axis(ax, window)
    # The legend of the states, as Grafana draws it under the panel: a colored square per value, right to
    # left, each entry as far from the next as its drawn text is wide (measured: an estimate per character
    # ran six statuses over the panel's title), plus a gap of two characters.
    right = 1.0
    width = ax.get_window_extent().width
    for option in reversed(list(options.values())):
        color = NAMED_COLORS.get(option.get("color", ""), option.get("color", "#1f78c1"))
        text = f"\u25a0 {option.get('text')}"
        label = ax.text(
            right, 1.02, text, transform=ax.transAxes, ha="right", va="bottom", color=color, fontsize=7
        )
        right -= (label.get_window_extent().width + 10) / width


def draw_table(ax: Axes, data: PanelData, window: Window) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if not data.rows:
        return
    hidden = {
        name
        for t in data.panel.get("transformations", [])
        if t.get("id") == "organize"
        for name, hide in t.get("options", {}).get("excludeByName", {}).items()
        if hide
    }
    labels = sorted({k for row in data.rows for k in row} - {"Value"} - hidden)
    columns = [*labels, *(["Value"] if "Value" not in hidden else [])]
    cells = [[row.get(c, "") for c in columns] for row in data.rows[:12]]
    table = ax.table(cellText=cells, colLabels=columns, loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(6)
    for cell in table.get_celld().values():
        cell.set_facecolor(BACKGROUND)
        cell.set_edgecolor("#444")
        cell.get_text().set_color(FOREGROUND)


DRAWERS = {
    "timeseries": draw_timeseries,
    "stat": draw_stat,
    "state-timeline": draw_states,
    "table": draw_table,
}


def draw(ax: Axes, data: PanelData, window: Window) -> None:
    _style(ax, str(data.panel.get("title", "")))
    kind = str(data.panel.get("type"))
    # Bars and lanes as wide as the panel's step; the time axis that of the dashboard (not the
    # step-aligned query range, which may end up to a step after now).
    DRAWERS.get(kind, draw_timeseries)(ax, data, window.for_panel(data.panel.get("interval")))
    if kind in ("timeseries", "state-timeline"):
        _time_axis(ax, window)
    if data.empty and data.panel.get("type") != "stat":  # a stat shows its own noValue
        # Grey as in Grafana: no data is often the healthy state (no alert firing), an error is red.
        message = "No data" if not data.errors else "Error: " + data.errors[0][:80]
        color = "#f2495c" if data.errors else "#8e8e8e"
        ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color=color, fontsize=9)


# Output ------------------------------------------------------------------------------------------------


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def render_panel_png(data: PanelData, window: Window, path: Path) -> None:
    grid = data.panel.get("gridPos", {})
    figure = plt.figure(
        figsize=(max(4.0, grid.get("w", 12) * COLUMN_INCHES), max(2.2, grid.get("h", 8) * ROW_INCHES)),
        facecolor=BACKGROUND,
    )
    try:
        draw(figure.add_axes((0.1, 0.14, 0.86, 0.74)), data, window)
        figure.savefig(path, dpi=90, facecolor=BACKGROUND)
    finally:
        plt.close(figure)


def render_composite(
    model: Mapping[str, Any], datas: Sequence[PanelData], window: Window, path: Path
) -> None:
    layout = list(model.get("panels", []))
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in layout)
    width, height = GRID_COLUMNS * COLUMN_INCHES, (bottom + 2.5) * ROW_INCHES
    figure: Figure = plt.figure(figsize=(width, height), facecolor=BACKGROUND)
    try:
        figure.text(0.01, 1 - 0.25 / height, str(model.get("title")), color="white", fontsize=14, va="top")
        by_id = {d.panel["id"]: d for d in datas}
        for panel in layout:
            grid = panel["gridPos"]
            left = grid["x"] / GRID_COLUMNS
            top = (grid["y"] + 2.2) * ROW_INCHES / height
            if panel.get("type") == "row":
                figure.text(
                    left + 0.005,
                    1 - top - 0.5 * ROW_INCHES / height,
                    panel["title"],
                    color="white",
                    fontsize=11,
                )
                continue
            box_height = grid["h"] * ROW_INCHES / height
            # Leave room inside the grid cell for the title above and the tick labels left and below.
            rect = (
                left + 0.025,
                1 - top - box_height + 0.45 * ROW_INCHES / height,
                grid["w"] / GRID_COLUMNS - 0.032,
                box_height - 1.0 * ROW_INCHES / height,
            )
            draw(figure.add_axes(rect), by_id[panel["id"]], window)
        figure.savefig(path, dpi=72, facecolor=BACKGROUND)
    finally:
        plt.close(figure)


@dataclass(frozen=True)
class RenderResult:
    dashboard_uid: str
    panel_title: str
    series: int
    errors: tuple[str, ...]


def render_dashboard(
    api: PrometheusAPI,
    model: Mapping[str, Any],
    out: Path,
    window: Window,
    chosen: Mapping[str, Sequence[str]] | None = None,
    *,
    per_panel: bool = True,
) -> list[RenderResult]:
    variables = resolve_variables(api, model, window.time, window.start, window.end, chosen)
    datas = [fetch_panel(api, panel, variables, window) for panel in panels(model)]
    uid = str(model["uid"])
    out.mkdir(parents=True, exist_ok=True)
    if per_panel:
        (out / uid).mkdir(exist_ok=True)
        for data in datas:
            render_panel_png(
                data, window, out / uid / f"{data.panel['id']:02d}-{_slug(data.panel['title'])}.png"
            )
    render_composite(model, datas, window, out / f"{uid}.png")
    return [
        RenderResult(uid, str(d.panel.get("title")), len(d.series) + len(d.rows), tuple(d.errors))
        for d in datas
    ]


#: Beside the pictures: what they were drawn from.
STAMP_NAME = "dashboards.sha256"


def stamp(dashboards: Sequence[Path]) -> str:
    """`sha256sum` lines of the dashboard JSON files, named as in the repository (grafana/dashboards/NAME,
    wherever they were read from), so that `sha256sum -c docs/img/dashboards.sha256` works from its root."""
    return "".join(
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  grafana/dashboards/{path.name}\n"
        for path in sorted(dashboards, key=lambda p: p.name)
    )


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30m, 15s)")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * scale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana.render", description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="output directory")
    parser.add_argument("--range", type=parse_duration, default=1800.0, help="time range ending now (30m)")
    parser.add_argument(
        "--scrape-interval", type=parse_duration, default=15.0, help="the datasource's timeInterval (15s)"
    )
    parser.add_argument("--dashboards", type=Path, default=DASHBOARDS_DIR, help="directory of dashboard JSON")
    parser.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE", help="pick a variable value"
    )
    parser.add_argument("--panels", action="store_true", help="also one PNG per panel, under OUT/<uid>/")
    args = parser.parse_args(argv)
    chosen: dict[str, list[str]] = {}
    for item in args.var:
        name, _, value = item.partition("=")
        chosen.setdefault(name, []).append(value)
    end = time.time()
    window = Window(end - args.range, end, args.scrape_interval)
    api = PrometheusAPI(args.prometheus)
    results: list[RenderResult] = []
    paths = sorted(args.dashboards.glob("*.json"))
    for path in paths:
        model = json.loads(path.read_text(encoding="utf-8"))
        try:
            results += render_dashboard(api, model, args.out, window, chosen, per_panel=args.panels)
        except (OSError, PrometheusError) as exc:
            print(f"cannot render {model['uid']} from {args.prometheus}: {exc}", file=sys.stderr)
            return 2
        print(f"rendered {model['uid']} into {args.out}")
    (args.out / STAMP_NAME).write_text(stamp(paths), encoding="utf-8")
    empty = [r for r in results if not r.series]
    for result in empty:
        print(
            f"no data: {result.dashboard_uid} / {result.panel_title} {' '.join(result.errors)}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
