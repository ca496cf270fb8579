"""The dashboard linter: the committed dashboards pass it, and each rule catches what it is for."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from grafana.build import DASHBOARDS_DIR
from grafana.lint import lint_dashboard, lint_dashboards, selectors
from grafana.queries import panels


def committed() -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS_DIR.glob("*.json"))]


def test_committed_dashboards_pass_every_rule():
    models = committed()
    assert len(models) == 3
    problems = lint_dashboards(models)
    assert problems == [], "\n".join(map(str, problems))


def test_every_panel_has_a_unit_and_every_query_has_job_and_instance():
    """Spelled out, independently of the linter's own walk."""
    for model in committed():
        for panel in panels(model):
            assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
            for target in panel["targets"]:
                assert 'job=~"$job"' in target["expr"] and 'instance=~"$instance"' in target["expr"]


def overview() -> dict[str, Any]:
    return copy.deepcopy(committed()[1])


def first_target(model: dict[str, Any]) -> dict[str, Any]:
    panel = next(p for p in panels(model) if p["type"] == "timeseries")
    target: dict[str, Any] = panel["targets"][0]
    return target


def rules(model: dict[str, Any]) -> set[str]:
    return {p.rule for p in lint_dashboard(model)}


def break_datasource_variable(m):
    m["templating"]["list"] = [v for v in m["templating"]["list"] if v["type"] != "datasource"]


def break_import_inputs(m):
    m["__inputs"] = [{"name": "DS_PROMETHEUS"}]
    next(panels(m))["datasource"]["uid"] = "${DS_PROMETHEUS}"


def break_job_variable(m):
    job = next(v for v in m["templating"]["list"] if v["name"] == "job")
    job["allValue"] = ".*"


def break_instance_variable(m):
    m["templating"]["list"] = [v for v in m["templating"]["list"] if v["name"] != "instance"]


def break_refresh(m):
    next(v for v in m["templating"]["list"] if v["name"] == "job")["refresh"] = 1


def break_job_matcher(m):
    first_target(m)["expr"] = first_target(m)["expr"].replace('job=~"$job", ', "")


def break_instance_matcher(m):
    first_target(m)["expr"] = "sum(up)"


def break_rate_interval(m):
    first_target(m)["expr"] = 'sum(rate(dydx_updates_total{job=~"$job", instance=~"$instance"}[5m]))'


def break_counter_agg(m):
    first_target(m)["expr"] = 'sum(dydx_updates_total{job=~"$job", instance=~"$instance"})'


def break_unit(m):
    del next(panels(m))["fieldConfig"]["defaults"]["unit"]


def break_panel_type(m):
    next(panels(m))["type"] = "graph"


def break_panel_datasource(m):
    next(panels(m))["datasource"] = {"type": "prometheus", "uid": "dydx-prometheus"}


def break_description(m):
    next(panels(m))["description"] = ""


def break_targets(m):
    next(panels(m))["targets"] = []


def break_uid(m):
    m["uid"] = "a uid with spaces"


def break_grid(m):
    second = list(panels(m))[1]
    second["gridPos"] = dict(next(panels(m))["gridPos"])


def break_promql(m):
    first_target(m)["expr"] = (
        'sum(rate(dydx_updates_total{job=~"$job", instance=~"$instance"}[$__rate_interval])'
    )


def panel(m: dict[str, Any], title: str) -> dict[str, Any]:
    return next(p for p in panels(m) if p["title"] == title)


def break_rate_unit(m):
    # The drilldown's old "Notional by side": dollars per second that read as "$5K".
    panel(m, "Trades by side")["fieldConfig"]["defaults"]["unit"] = "currencyUSD"


def break_event_count(m):
    # The old "Disconnects": increase() over $__rate_interval, drawn as a count (1.2 disconnects).
    panel(m, "Disconnects by close code")["targets"][0]["expr"] = (
        'sum by (code) (increase(dydx_ws_disconnects_total{job=~"$job", instance=~"$instance"}'
        "[$__rate_interval]))"
    )


def break_event_bars(m):
    panel(m, "Reconnects")["fieldConfig"]["defaults"]["custom"]["drawStyle"] = "line"


def break_event_interval(m):
    del panel(m, "Reconnects")["interval"]


def break_integer_axis(m):
    del panel(m, "Blocks behind the freshest instance")["fieldConfig"]["defaults"]["decimals"]


def break_table_value_column(m):
    alerts = next(p for p in panels(m) if p["title"] == "Alerts firing" and p["type"] == "table")
    for transformation in alerts["transformations"]:
        transformation["options"]["excludeByName"].pop("Value", None)


@pytest.mark.parametrize(
    ("breakage", "rule"),
    [
        (break_datasource_variable, "template-datasource-rule"),
        (break_import_inputs, "provisioning-rule"),
        (break_job_variable, "template-job-rule"),
        (break_instance_variable, "template-instance-rule"),
        (break_refresh, "template-on-time-change-reload-rule"),
        (break_job_matcher, "target-job-rule"),
        (break_instance_matcher, "target-instance-rule"),
        (break_rate_interval, "target-rate-interval-rule"),
        (break_counter_agg, "target-counter-agg-rule"),
        (break_unit, "panel-units-rule"),
        (break_panel_type, "panel-deprecated-type-rule"),
        (break_panel_datasource, "panel-datasource-rule"),
        (break_description, "panel-title-description-rule"),
        (break_targets, "panel-no-targets-rule"),
        (break_uid, "uid-rule"),
        (break_grid, "grid-rule"),
        (break_promql, "target-promql-rule"),
        (break_rate_unit, "panel-rate-unit-rule"),
        (break_event_count, "target-event-count-rule"),
        (break_event_bars, "panel-event-bars-rule"),
        (break_event_interval, "panel-event-bars-rule"),
        (break_integer_axis, "panel-integer-axis-rule"),
        (break_table_value_column, "table-value-column-rule"),
    ],
)
def test_each_rule_catches_its_violation(breakage, rule):
    model = overview()
    assert rule not in rules(model)
    breakage(model)
    assert rule in rules(model)


def test_uids_must_be_unique_and_links_must_resolve():
    models = committed()
    models[2]["uid"] = models[0]["uid"]
    found = {p.rule for p in lint_dashboards(models)}
    assert {"uid-rule", "link-rule"} <= found


def test_selector_extraction_understands_aggregations_and_vector_matching():
    found = selectors(
        'sum by (channel) (max without (instance, replica) (rate(a_total{job=~"$job"}[$__rate_interval])))'
        " / on (job, market) group_left (status) b{x='1'} offset 5m + count(c)"
    )
    assert [(s.name, s.function, s.range) for s in found] == [
        ("a_total", "rate", "$__rate_interval"),
        ("b", None, None),
        ("c", "count", None),
    ]
    assert found[0].matchers == [("job", "=~", "$job")]
    assert found[1].matchers == [("x", "=", "1")]


def test_rates_ratios_and_quantiles_are_told_apart():
    """A ratio of rates and a quantile of a rate are not per-second values; an increase over the whole
    range is a total, not a sliding count; whole-valued series through sum/max stay whole."""
    model = overview()
    ratio = panel(model, "Error ratio")
    assert ratio["fieldConfig"]["defaults"]["unit"] == "percentunit"
    latency = panel(model, "Feed latency by channel")
    assert "histogram_quantile" in latency["targets"][0]["expr"]
    total = panel(model, "Messages by channel")
    total["targets"][0]["expr"] = (
        'sum(increase(dydx_ws_messages_total{job=~"$job", instance=~"$instance"}[$__range]))'
    )
    total["fieldConfig"]["defaults"]["unit"] = "none"
    total["fieldConfig"]["defaults"]["decimals"] = 0
    found = {(p.rule, p.where.split(" / ")[1]) for p in lint_dashboard(model)}
    assert not {f for f in found if f[1] in ("Error ratio", "Feed latency by channel", "Messages by channel")}


def test_event_counts_are_exact_differences_the_linter_accepts():
    found = selectors(
        'sum by (code) (((a_total{x="1"} - a_total{x="1"} offset $__interval) >= 0 or a_total{x="1"}))'
    )
    assert [(s.name, s.offset) for s in found] == [
        ("a_total", None),
        ("a_total", "$__interval"),
        ("a_total", None),
    ]
