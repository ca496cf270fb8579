"""Every query of a dashboard, and the variable substitution Grafana performs before sending it.

Used by the renderer and by the end-to-end test, so that both evaluate exactly what a Grafana user sees.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Characters Grafana's Prometheus datasource escapes in a multi-value variable (prometheusRegularEscape).
_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|\[\]{}])")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


@dataclass(frozen=True)
class PanelQuery:
    dashboard_uid: str
    panel_id: int
    panel_title: str
    panel_type: str
    unit: str
    ref_id: str
    expr: str
    legend: str
    instant: bool
    #: The panel's min interval (Grafana's query option), e.g. "1m" for event bars; "" when unset.
    min_interval: str = ""


def panels(model: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard in layout order, panels inside collapsed rows included; rows excluded."""
    for panel in model.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def panel_queries(model: Mapping[str, Any]) -> Iterator[PanelQuery]:
    for panel in panels(model):
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        for target in panel.get("targets", []):
            if target.get("hide"):
                continue
            yield PanelQuery(
                dashboard_uid=model["uid"],
                panel_id=panel["id"],
                panel_title=panel.get("title", ""),
                panel_type=panel.get("type", ""),
                unit=unit,
                ref_id=target.get("refId", ""),
                expr=target["expr"],
                legend=target.get("legendFormat", ""),
                instant=bool(target.get("instant")) and not target.get("range"),
                min_interval=str(panel.get("interval") or ""),
            )


def duration(seconds: float) -> str:
    """Grafana-style duration literal for PromQL (whole seconds, or milliseconds below one second)."""
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def rate_interval(scrape_interval: float, interval: float) -> float:
    """Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval)."""
    return max(interval + scrape_interval, 4 * scrape_interval)


def step_for(range_seconds: float, scrape_interval: float, max_points: int = 600) -> float:
    """$__interval as Grafana picks it: the range over the panel's points, never below the scrape interval."""
    return float(max(scrape_interval, -(-range_seconds // max_points)))


def format_value(values: Sequence[str], all_value: str | None = None) -> str:
    """How Grafana writes a (multi-)value into a Prometheus query: `All` as its allValue, others escaped."""
    if all_value is not None:
        return all_value
    escaped = [_REGEX_SPECIAL.sub(r"\\\1", v) for v in values]
    if len(escaped) == 1:
        return escaped[0]
    return "(" + "|".join(escaped) + ")"


@dataclass(frozen=True)
class TimeContext:
    """The built-in variables: interval, scrape interval and range, in seconds."""

    interval: float
    scrape_interval: float
    range: float

    def builtins(self) -> dict[str, str]:
        return {
            "__interval": duration(self.interval),
            "__interval_ms": str(round(self.interval * 1000)),
            "__rate_interval": duration(rate_interval(self.scrape_interval, self.interval)),
            "__range": duration(self.range),
            "__range_s": str(round(self.range)),
            "__range_ms": str(round(self.range * 1000)),
        }


def substitute(expr: str, variables: Mapping[str, str], time: TimeContext) -> str:
    """Replace `$var`, `${var}`, `[[var]]` and the built-ins; unknown variables are an error."""
    values = {**time.builtins(), **variables}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in values:
            raise KeyError(f"variable ${name} has no value (query: {expr})")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def variable_definitions(model: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(model.get("templating", {}).get("list", []))


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<selector>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$", re.S)


def parse_label_values(query: str) -> tuple[str | None, str]:
    """`label_values(selector, label)` → (selector or None, label)."""
    match = _LABEL_VALUES.match(query)
    if not match:
        raise ValueError(f"not a label_values() query: {query!r}")
    return match.group("selector"), match.group("label")


def variable_query(variable: Mapping[str, Any]) -> str:
    query = variable.get("query", "")
    if isinstance(query, Mapping):
        query = query.get("query", "")
    return str(query)


def dashboard_exprs(model: Mapping[str, Any]) -> list[str]:
    """Every PromQL expression a dashboard runs: its panels' queries, then its query variables' selectors."""
    exprs = [q.expr for q in panel_queries(model)]
    for variable in variable_definitions(model):
        if variable["type"] == "query":
            selector, _ = parse_label_values(variable_query(variable))
            exprs += [selector] if selector else []
    return exprs
