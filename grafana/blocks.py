"""Building blocks shared by every dashboard: the datasource, the variables, panels with units, links.

Every query goes through `sel()` so that it carries the `job`/`instance` matchers the linter asks for, and
every range goes through `RATE` so that rates follow the datasource's scrape interval the way Grafana does.

A dashboard module says only what differs from panel to panel: `build_dashboard()` lays out its rows,
and each kind of panel is one function here. `graph` (any time series), `per_second` (a counter's rate
per label value), `latency` (a seconds histogram's quantiles), `event_bars` with `events()` (whole
events), `single` (one value), `states` (a state timeline), `listing` (a table of labels). Queries name
their series with `per()`/`legend()` and count HA pairs once with `one_replica()`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    Dashboard,
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    Panel,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

#: The provisioned Prometheus datasource (grafana/provisioning/datasources/prometheus.yml).
DATASOURCE_UID = "dydx-prometheus"
DATASOURCE_NAME = "Prometheus"
#: Grafana's own default for $__rate_interval is 4 x this; it must equal the production scrape interval.
SCRAPE_INTERVAL = "15s"
TAG = "dydx"

DS = DataSourceRef(type_val="prometheus", uid="$datasource")
RATE = "[$__rate_interval]"
#: Event counts (blocks.events) are drawn as one bar per $__interval, at least this wide: a bar then holds
#: a minute of events whatever the zoom, and a longer range merges minutes instead of dropping them.
EVENTS_MIN_INTERVAL = "1m"
EVENTS_RANGE = "$__interval"
#: The matchers every selector carries (the dashboard-linter's target-job and target-instance rules).
MATCH = 'job=~"$job", instance=~"$instance"'
#: HA pairs scrape the same shard twice: drop the replica dimension before summing, never double count.
DEDUP = "max without (instance, replica)"

PanelBuilder = Builder[Panel]


@dataclass(frozen=True)
class DashboardRef:
    uid: str
    title: str

    @property
    def url(self) -> str:
        return f"/d/{self.uid}"


OVERVIEW = DashboardRef("dydx-feed-overview", "dYdX feed overview")
MARKET = DashboardRef("dydx-market-drilldown", "dYdX market drilldown")
INTERNALS = DashboardRef("dydx-exporter-internals", "dYdX exporter internals")
ALL_DASHBOARDS = (OVERVIEW, MARKET, INTERNALS)


@dataclass(frozen=True)
class Q:
    """One query of a panel: PromQL and its legend."""

    expr: str
    legend: str = ""
    instant: bool = False


def sel(metric: str, *matchers: str) -> str:
    """`metric{job=~"$job", instance=~"$instance", <matchers>}`."""
    extra = "".join(f", {m}" for m in matchers)
    return f"{metric}{{{MATCH}{extra}}}"


def rate(metric: str, *matchers: str) -> str:
    return f"rate({sel(metric, *matchers)}{RATE})"


def age(metric: str, *matchers: str) -> str:
    """Seconds from the Unix time a gauge holds to when Prometheus scraped it: how old the data was as the
    exporter last reported it. Not `time() - metric`, which adds the time since that scrape (0 to 15 s at
    the production interval) and turned a healthy feed orange between scrapes."""
    selector = sel(metric, *matchers)
    return f"(timestamp({selector}) - {selector})"


def exporters_only(expr: str) -> str:
    """`expr` for the exporters among the selected targets. With All, $job matches every job of the
    Prometheus (the simulator, Prometheus itself): their `up`, `scrape_*` and `process_*` series would
    otherwise be drawn as the exporter's."""
    return f"({expr}) and on (job, instance) {sel('dydx_exporter_build_info')}"


def one_replica(expr: str) -> str:
    """`expr` once per HA pair: both replicas of a shard report the same series (DEDUP)."""
    return f"{DEDUP} ({expr})"


def legend(by: str) -> str:
    """A series named by the values of the labels `by`: "market, side" → "{{market}} {{side}}"."""
    return " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(","))


def per(by: str, expr: str, fn: str = "sum") -> Q:
    """A series per value of the labels `by` (`fn` of `expr` over the other labels), named by them."""
    return Q(f"{fn} by ({by}) ({expr})", legend(by))


def events(metric: str, *matchers: str, by: str, dedup: bool = False) -> Q:
    """Whole events per bar: `metric`'s exact increase over each bar's own interval ($__interval).

    Not increase(), which extrapolates (1.2 events) and, over $__rate_interval, overlaps the next point, so
    the same crossing is drawn in several bars and the height changes with zoom. The difference of two
    samples one $__interval apart tiles the time axis with no gap and no overlap, and a counter's
    difference is an integer. Where there is no earlier sample (a series born in this interval, such as
    the first disconnect with a new close code) or the counter went down (the exporter restarted), every
    event the counter holds happened in this interval: `or` takes the counter itself. A series per value
    of the labels `by`, named by them; `dedup` counts one replica of each HA pair."""
    selector = sel(metric, *matchers)
    delta = f"(({selector} - {selector} offset {EVENTS_RANGE}) >= 0 or {selector})"
    return per(by, one_replica(delta) if dedup else delta)


def _quantiles(histogram: str, by: str, qs: Sequence[float]) -> list[Q]:
    """One query a quantile of `histogram`, a series per value of the labels `by` (none: over
    everything), legends `p50 {{by}}`."""
    labels = f"le, {by}" if by else "le"
    buckets = rate(histogram + "_bucket")
    return [
        Q(
            f"histogram_quantile({q}, sum by ({labels}) ({buckets}))",
            f"p{round(q * 100)} {legend(by)}" if by else f"p{round(q * 100)}",
        )
        for q in qs
    ]


# Variables ---------------------------------------------------------------------------------------------


def datasource_variable() -> db.DatasourceVariable:
    return (
        db.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(VariableOption(selected=True, text=DATASOURCE_NAME, value=DATASOURCE_UID))
    )


def query_variable(
    name: str, label: str, query: str, *, include_all: bool = True, multi: bool = True
) -> db.QueryVariable:
    variable = (
        db.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(query)
        .multi(multi)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )
    if include_all:
        # The linter's template-job/instance rules: "All" is `.+`, not a huge alternation of every value.
        variable = (
            variable.include_all(True)
            .all_value(".+")
            .current(VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
    return variable


def job_instance_variables() -> list[db.QueryVariable]:
    return [
        query_variable("job", "Job", "label_values(dydx_exporter_build_info, job)"),
        query_variable(
            "instance", "Instance", 'label_values(dydx_exporter_build_info{job=~"$job"}, instance)'
        ),
    ]


# Dashboards --------------------------------------------------------------------------------------------


#: One row of a dashboard: its title and its panels, laid out left to right, then down.
Section = tuple[str, Sequence[PanelBuilder]]


def build_dashboard(
    ref: DashboardRef,
    description: str,
    sections: Sequence[Section],
    *,
    variables: Sequence[db.QueryVariable] = (),
) -> Dashboard:
    """The dashboard `ref` with the shared variables (datasource, job, instance) then `variables`, links to
    the other dashboards, and `sections` top to bottom."""
    dashboard = (
        db.Dashboard(ref.title)
        .uid(ref.uid)
        .description(description)
        .tags([TAG])
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .readonly()
        .with_variable(datasource_variable())
    )
    for variable in [*job_instance_variables(), *variables]:
        dashboard = dashboard.with_variable(variable)
    for other in ALL_DASHBOARDS:
        if other != ref:
            dashboard = dashboard.link(
                db.DashboardLink(other.title)
                .type(DashboardLinkType.LINK)
                .url(other.url)
                .icon("dashboard")
                .include_vars(True)
                .keep_time(True)
            )
    for title, panels in sections:
        dashboard = dashboard.with_row(db.Row(title))
        for panel in panels:
            dashboard = dashboard.with_panel(panel)
    return dashboard.build()


# Panels ------------------------------------------------------------------------------------------------


def _targets(queries: Sequence[Q], *, table_format: bool = False) -> list[Builder[Dataquery]]:
    targets: list[Builder[Dataquery]] = []
    for index, q in enumerate(queries):
        target = prometheus.Dataquery().expr(q.expr).ref_id(chr(ord("A") + index)).datasource(DS)
        if q.legend:
            target = target.legend_format(q.legend)
        target = target.instant() if q.instant else target.range()
        if table_format:
            target = target.format(PromQueryFormat.TABLE)
        targets.append(target)
    return targets


class _PanelBuilder(Protocol):
    """The setters every panel builder of the SDK has (its builders share no base class that has them)."""

    def title(self, title: str, /) -> Self: ...
    def description(self, description: str, /) -> Self: ...
    def datasource(self, datasource: DataSourceRef, /) -> Self: ...
    def unit(self, unit: str, /) -> Self: ...
    def span(self, w: int, /) -> Self: ...
    def height(self, h: int, /) -> Self: ...
    def targets(self, targets: list[Builder[Dataquery]], /) -> Self: ...
    def decimals(self, decimals: float, /) -> Self: ...


_P = TypeVar("_P", bound=_PanelBuilder)


def _panel(
    panel: _P,
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Q],
    *,
    width: int,
    height: int,
    integer: bool = False,
    table_format: bool = False,
) -> _P:
    """What every panel has, whatever it draws: title, description, datasource, unit, size, queries;
    `integer` shows no decimals."""
    panel = (
        panel.title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .span(width)
        .height(height)
        .targets(_targets(queries, table_format=table_format))
    )
    return panel.decimals(0) if integer else panel


#: A panel's color steps: (the lowest value of the step, None for the base step; its color).
Thresholds = tuple[tuple[float | None, str], ...]
#: Thresholds of a value that is never bad.
GREEN: Thresholds = ((None, "green"),)


def _thresholds(steps: Thresholds) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def _value_map(mappings: Mapping[str, tuple[str, str | None]]) -> ValueMap:
    """Value → (text, color); a None color leaves the color to the thresholds."""
    return ValueMap(
        options={
            value: ValueMappingResult(text=text, color=color, index=index)
            for index, (value, (text, color)) in enumerate(mappings.items())
        }
    )


def _legend(
    as_table: bool = True, calcs: Sequence[str] = ("lastNotNull", "max")
) -> common_b.VizLegendOptions:
    legend = (
        common_b.VizLegendOptions()
        .show_legend(True)
        .placement(common.LegendPlacement.BOTTOM)
        .display_mode(common.LegendDisplayMode.TABLE if as_table else common.LegendDisplayMode.LIST)
    )
    if as_table:
        legend = legend.calcs(list(calcs))
    return legend


def graph(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Q],
    *,
    width: int = 12,
    height: int = 8,
    stack: bool = False,
    min_value: float | None = None,
    integer: bool = False,
) -> timeseries.Panel:
    """A time series. `unit` says what is drawn: a per-second unit (cps, Bps, `count:USD/s`) for rates;
    `integer` for quantities that only take whole values (file descriptors, levels, blocks behind)."""
    panel = (
        _panel(
            timeseries.Panel(), title, description, unit, queries, width=width, height=height, integer=integer
        )
        .legend(_legend())
        .fill_opacity(10)
        .line_width(1)
        .show_points(common.VisibilityMode.NEVER)
    )
    if stack:
        panel = panel.stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL))
    if min_value is not None:
        panel = panel.min(min_value)
    return panel


def per_second(
    title: str,
    description: str,
    unit: str,
    counter: str,
    *matchers: str,
    by: str,
    dedup: bool = False,
    width: int = 12,
    stack: bool = False,
) -> timeseries.Panel:
    """`counter`'s rate, a series per value of the labels `by`; `dedup` counts one replica of each HA pair.
    `unit` is a per-second one (cps, reqps, Bps, `count:USD/s`)."""
    each = rate(counter, *matchers)
    query = per(by, one_replica(each) if dedup else each)
    return graph(title, description, unit, [query], width=width, stack=stack)


def latency(
    title: str,
    description: str,
    histogram: str,
    *,
    by: str = "",
    qs: Sequence[float] = (0.5, 0.99),
    width: int = 12,
) -> timeseries.Panel:
    """Quantiles of a histogram of seconds (p50 and p99 unless `qs`), a series per quantile and value of the
    labels `by` (none: over everything)."""
    return graph(title, description, "s", _quantiles(histogram, by, qs), width=width)


def event_bars(
    title: str, description: str, queries: Sequence[Q], *, width: int = 12, height: int = 8
) -> timeseries.Panel:
    """Whole events (queries built with `events()`): one bar per interval of at least
    EVENTS_MIN_INTERVAL, stacked by series, integer axis; the legend totals them over the range."""
    return (
        graph(title, description, "none", queries, width=width, height=height, stack=True, integer=True)
        .interval(EVENTS_MIN_INTERVAL)
        .legend(_legend(calcs=("sum", "max")))
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .min(0)
    )


def single(
    title: str,
    description: str,
    unit: str,
    query: Q,
    *,
    width: int = 4,
    height: int = 4,
    thresholds: Thresholds = GREEN,
    mappings: dict[str, str] | None = None,
    integer: bool = False,
) -> stat.Panel:
    """A single value on a background colored by `thresholds`; `mappings` maps a value to its text."""
    panel = (
        _panel(stat.Panel(), title, description, unit, [query], width=width, height=height, integer=integer)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(_thresholds(thresholds))
    )
    if mappings:
        panel = panel.mappings([_value_map({value: (text, None) for value, text in mappings.items()})])
    return panel


def states(
    title: str,
    description: str,
    queries: Sequence[Q],
    mappings: dict[str, tuple[str, str]],
    *,
    width: int = 12,
    height: int = 8,
    unit: str = "none",
) -> statetimeline.Panel:
    """A state timeline; `mappings` maps a value to (text, color)."""
    return (
        _panel(statetimeline.Panel(), title, description, unit, queries, width=width, height=height)
        .mappings([_value_map(mappings)])
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .legend(_legend(as_table=False))
        .thresholds(_thresholds(GREEN))
    )


def listing(
    title: str,
    description: str,
    queries: Sequence[Q],
    *,
    width: int = 12,
    height: int = 8,
    unit: str = "none",
) -> table.Panel:
    """A table of the current series' labels (instant queries, one row per series). Made for info-style
    series whose value is always 1 (`*_info`, `ALERTS`): the Value column says nothing and is hidden."""
    instant = [Q(q.expr, q.legend, instant=True) for q in queries]
    return _panel(
        table.Panel(), title, description, unit, instant, width=width, height=height, table_format=True
    ).with_transformation(_organize_labels_only())


def _organize_labels_only() -> DataTransformerConfig:
    return DataTransformerConfig(
        id_val="organize", options={"excludeByName": {"Time": True, "__name__": True, "Value": True}}
    )
