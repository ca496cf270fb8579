"""The rules of Grafana's dashboard-linter that apply to these dashboards, in Python.

    python -m grafana.lint [FILE.json ...]     # default: grafana/dashboards/*.json; exit 1 on problems

Rules (names as in github.com/grafana/dashboard-linter): template-datasource-rule, template-job-rule,
template-instance-rule, template-on-time-change-reload-rule, panel-datasource-rule,
panel-title-description-rule, panel-units-rule, panel-no-targets-rule, target-job-rule,
target-instance-rule, target-rate-interval-rule, target-counter-agg-rule, plus: no `__inputs` or
`${DS_...}` (dashboards are provisioned, not imported), no deprecated panel types, valid and unique uids,
unique panel ids and refIds, panels inside the 24-column grid without overlaps, links to existing uids.

And what makes a panel readable (issue 13): a rate carries a per-second unit (panel-rate-unit-rule);
events are counted whole, never as increase() over a sliding window (target-event-count-rule), drawn as
bars per fixed interval on an integer axis (panel-event-bars-rule); quantities that only take whole values
get an integer axis (panel-integer-axis-rule); a table of info series hides its constant Value column
(table-value-column-rule).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grafana.queries import panels, parse_label_values, variable_definitions, variable_query

DEPRECATED_PANEL_TYPES = frozenset(
    {
        "graph",
        "singlestat",
        "table-old",
        "grafana-piechart-panel",
        "grafana-worldmap-panel",
        "flant-statusmap-panel",
    }
)
PANELS_WITHOUT_QUERIES = frozenset({"row", "text", "dashlist", "news", "annolist"})
DATASOURCE_REFS = frozenset({"$datasource", "${datasource}"})
RATE_FUNCTIONS = frozenset({"rate", "irate", "increase"})
PER_SECOND_FUNCTIONS = frozenset({"rate", "irate"})
#: Grafana units that say "per second" (the /s is part of how they print).
PER_SECOND_UNITS = frozenset(
    {
        "cps", "ops", "reqps", "rps", "wps", "iops", "pps", "hertz", "Bps", "binBps", "bps", "binbps",
        "KiBs", "Kibits", "KBs", "Kbits", "MiBs", "Mibits", "MBs", "Mbits", "GiBs", "Gibits", "GBs", "Gbits",
    }
)  # fmt: skip
#: Dimensionless units: a ratio of two rates (errors per frame, CPU seconds per second) is not a rate.
RATIO_UNITS = frozenset({"percentunit", "percent"})
#: Grafana's custom units (`count:USD/s` prints "5K USD/s"); the text after the colon is free.
CUSTOM_UNIT_PREFIXES = ("prefix:", "suffix:", "count:", "currency:", "si:")
#: Series whose every value is a whole number (counts of things, heights, 0/1 states).
INTEGER_METRICS = frozenset(
    {
        "up", "ALERTS", "dydx_exporter_build_info", "scrape_samples_scraped", "process_open_fds",
        "process_max_fds", "dydx_ready", "dydx_component_up", "dydx_ws_connected", "dydx_subscriptions",
        "dydx_block_height", "dydx_orderbook_levels", "dydx_orderbook_crossed",
        "dydx_subaccount_open_positions", "dydx_subaccount_open_orders",
    }
)  # fmt: skip
#: Functions and operators after which a whole-valued series no longer is one.
_NON_INTEGER = frozenset(
    {"rate", "irate", "increase", "avg", "avg_over_time", "quantile", "histogram_quantile", "time", "deriv",
     "predict_linear", "stddev", "stdvar", "/", "^"}
)  # fmt: skip
#: Event counts are differences of a counter and itself one bar earlier (grafana.blocks.events).
EVENTS_OFFSET = "$__interval"

UID_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")

#: Grafana's value formats (packages/grafana-data/src/valueFormats/categories.ts), as the linter lists them.
VALID_UNITS = frozenset(
    {
        "none", "string", "short", "percent", "percentunit", "humidity", "dB", "hex0x", "hex", "sci",
        "locale", "pixel", "bytes", "decbytes", "bits", "decbits", "kbytes", "deckbytes", "mbytes",
        "decmbytes", "gbytes", "decgbytes", "tbytes", "dectbytes", "pps", "binBps", "Bps", "binbps", "bps",
        "KiBs", "Kibits", "KBs", "Kbits", "MiBs", "Mibits", "MBs", "Mbits", "GiBs", "Gibits", "GBs", "Gbits",
        "dateTimeAsIso", "dateTimeAsIsoNoDateIfToday", "dateTimeAsUS", "dateTimeAsUSNoDateIfToday",
        "dateTimeAsLocal", "dateTimeAsLocalNoDateIfToday", "dateTimeAsSystem", "dateTimeFromNow", "hertz",
        "ns", "µs", "ms", "s", "m", "h", "d", "dtdurationms", "dtdurations", "dthms", "dtdhms", "timeticks",
        "clockms", "clocks", "cps", "ops", "reqps", "rps", "wps", "iops", "cpm", "opm", "rpm", "wpm",
        "currencyUSD", "currencyEUR", "currencyBTC", "bool", "bool_yes_no", "bool_on_off",
    }
)  # fmt: skip


# A PromQL lexer just deep enough to find selectors, their matchers, ranges and enclosing function. -----

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<variable>\$\{\w+(?::\w+)?\}|\$\w+|\[\[\w+\]\])
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?(?:\d+(?:ms|[smhdwy]))*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}\[\]:@])
    """,
    re.X,
)
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}
)
_LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_LITERALS = frozenset({"inf", "nan", "Inf", "NaN"})


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


@dataclass
class Selector:
    name: str
    matchers: list[tuple[str, str, str]] = field(default_factory=list)
    range: str | None = None
    function: str | None = None  # the function whose argument list directly holds this selector
    offset: str | None = None

    def same_series(self, other: Selector) -> bool:
        return self.name == other.name and sorted(self.matchers) == sorted(other.matchers)


class PromQLSyntaxError(ValueError):
    pass


def tokenize(expr: str) -> list[Token]:
    tokens = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if not match:
            raise PromQLSyntaxError(f"unexpected {expr[position : position + 10]!r} at {position}")
        kind = match.lastgroup or ""
        if kind not in ("ws", "comment"):
            tokens.append(Token(kind, match.group()))
        position = match.end()
    return tokens


def selectors(expr: str) -> list[Selector]:
    """The vector selectors of `expr`, with their label matchers, range and enclosing function."""
    tokens = tokenize(expr)
    found: list[Selector] = []
    calls: list[str] = []  # one entry per open parenthesis: the function it belongs to, or ""
    i = 0

    def skip_label_list(j: int) -> int:
        if j < len(tokens) and tokens[j].text == "(":
            depth = 0
            while j < len(tokens):
                depth += {"(": 1, ")": -1}.get(tokens[j].text, 0)
                j += 1
                if depth == 0:
                    break
        return j

    while i < len(tokens):
        token = tokens[i]
        following = tokens[i + 1].text if i + 1 < len(tokens) else ""
        if token.kind == "ident" and token.text in _LABEL_LIST_KEYWORDS:
            i = skip_label_list(i + 1)
            continue
        if token.kind == "ident" and following == "(":
            calls.append(token.text)
            i += 2
            continue
        if token.kind == "ident" and following in ("by", "without"):
            # `sum by (x) (...)`: the call's parenthesis comes after the label list.
            j = skip_label_list(i + 2)
            if j < len(tokens) and tokens[j].text == "(":
                calls.append(token.text)
                i = j + 1
                continue
        if token.text == "(":
            calls.append("")
            i += 1
            continue
        if token.text == ")":
            if not calls:
                raise PromQLSyntaxError(f"unbalanced ')' in {expr!r}")
            calls.pop()
            i += 1
            continue
        is_name = token.kind == "ident" and token.text not in _KEYWORDS and token.text not in _LITERALS
        if is_name or token.text == "{":
            selector = Selector(name=token.text if is_name else "", function=calls[-1] if calls else None)
            i += 1 if is_name else 0
            if i < len(tokens) and tokens[i].text == "{":
                i = _matchers(tokens, i + 1, selector, expr)
            if i < len(tokens) and tokens[i].text == "[":
                end = next((j for j in range(i, len(tokens)) if tokens[j].text == "]"), None)
                if end is None:
                    raise PromQLSyntaxError(f"unclosed '[' in {expr!r}")
                selector.range = "".join(t.text for t in tokens[i + 1 : end])
                i = end + 1
            if i + 1 < len(tokens) and tokens[i].text == "offset":
                selector.offset = tokens[i + 1].text
                i += 2
            found.append(selector)
            continue
        i += 1
    if calls:
        raise PromQLSyntaxError(f"unbalanced '(' in {expr!r}")
    return found


def _matchers(tokens: Sequence[Token], i: int, selector: Selector, expr: str) -> int:
    while i < len(tokens) and tokens[i].text != "}":
        if tokens[i].text == ",":
            i += 1
            continue
        if i + 2 >= len(tokens) or tokens[i + 2].kind != "string":
            raise PromQLSyntaxError(f"bad label matcher in {expr!r}")
        label, op, value = tokens[i].text, tokens[i + 1].text, tokens[i + 2].text[1:-1]
        if label.startswith(("'", '"')):
            label = label[1:-1]
        selector.matchers.append((label, op, value))
        if label == "__name__" and op == "=":
            selector.name = value
        i += 3
    if i >= len(tokens):
        raise PromQLSyntaxError(f"unclosed '{{' in {expr!r}")
    return i + 1


# Rules ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.where}: {self.message}"


def lint_dashboard(model: Mapping[str, Any]) -> list[Problem]:
    title = str(model.get("title", "?"))
    problems = list(_dashboard_rules(model, title))
    seen_ids: set[int] = set()
    for panel in panels(model):
        where = f"{title} / {panel.get('title', '?')}"
        problems += _panel_rules(panel, where, seen_ids)
        problems += _readability_rules(panel, where)
        for index, target in enumerate(panel.get("targets", [])):
            problems += _target_rules(target, f"{where} / target {target.get('refId', index)}")
    problems += _grid_rules(model, title)
    return problems


def lint_dashboards(models: Sequence[Mapping[str, Any]]) -> list[Problem]:
    """Each dashboard, plus what only the set can tell: unique uids and links that resolve."""
    problems = [p for model in models for p in lint_dashboard(model)]
    uids = [str(m.get("uid", "")) for m in models]
    problems += [
        Problem("uid-rule", uid, "uid used by more than one dashboard")
        for uid in sorted({u for u in uids if uids.count(u) > 1})
    ]
    known = set(uids)
    for model in models:
        for link in model.get("links", []):
            uid = _linked_uid(link)
            if link.get("type") == "link" and uid not in known:
                problems.append(Problem("link-rule", str(model.get("title")), f"link to unknown uid {uid!r}"))
    return problems


def _linked_uid(link: Mapping[str, Any]) -> str:
    match = re.match(r"^/d/([^/?]+)", str(link.get("url", "")))
    return match.group(1) if match else ""


def _dashboard_rules(model: Mapping[str, Any], title: str) -> Iterator[Problem]:
    text = json.dumps(model)
    if "__inputs" in model or "__requires" in model:
        yield Problem(
            "provisioning-rule", title, "has __inputs/__requires: an export for import, not provisioning"
        )
    if "${DS_" in text or "$DS_" in text:
        yield Problem("provisioning-rule", title, "references an import-time ${DS_...} datasource")
    uid = str(model.get("uid", ""))
    if not UID_RE.match(uid):
        yield Problem("uid-rule", title, f"uid {uid!r} must be 1-40 characters of [A-Za-z0-9_-]")
    if model.get("editable", True):
        yield Problem("uneditable-dashboard-rule", title, "provisioned dashboards should not be editable")
    variables = {v.get("name"): v for v in variable_definitions(model)}
    datasources = [v for v in variables.values() if v.get("type") == "datasource"]
    if not datasources:
        yield Problem("template-datasource-rule", title, "no templated datasource")
    for ds in datasources:
        if ds.get("name") not in ("datasource", "prometheus_datasource") or ds.get("query") != "prometheus":
            yield Problem("template-datasource-rule", title, "the datasource variable must be `datasource`")
        if ds.get("label") not in ("Data source", "Prometheus data source"):
            yield Problem(
                "template-datasource-rule", title, "the datasource variable must be labeled 'Data source'"
            )
    for name in ("job", "instance"):
        yield from _required_variable(variables.get(name), name, title)
    for variable in variables.values():
        if variable.get("type") != "query":
            continue
        if variable.get("refresh") != 2:
            yield Problem(
                "template-on-time-change-reload-rule",
                title,
                f"${variable.get('name')} must refresh on time change",
            )
        try:
            selector, _ = parse_label_values(variable_query(variable))
            if selector:
                selectors(selector)
        except ValueError as exc:
            yield Problem("template-label-promql-rule", title, f"${variable.get('name')}: {exc}")


def _required_variable(variable: Mapping[str, Any] | None, name: str, title: str) -> Iterator[Problem]:
    rule = f"template-{name}-rule"
    if variable is None:
        yield Problem(rule, title, f"missing the {name} variable")
        return
    if variable.get("type") != "query":
        yield Problem(rule, title, f"${name} must be a query variable")
    if variable.get("datasource", {}).get("uid") not in DATASOURCE_REFS:
        yield Problem(rule, title, f"${name} must use the $datasource variable")
    if variable.get("label") != name.title():
        yield Problem(rule, title, f"${name} must be labeled {name.title()!r}")
    if not variable.get("multi"):
        yield Problem(rule, title, f"${name} must be multi-select")
    if not variable.get("includeAll") or variable.get("allValue") != ".+":
        yield Problem(rule, title, f"${name} must include All with allValue '.+'")


def _panel_rules(panel: Mapping[str, Any], where: str, seen_ids: set[int]) -> Iterator[Problem]:
    kind = panel.get("type", "")
    if kind in DEPRECATED_PANEL_TYPES:
        yield Problem("panel-deprecated-type-rule", where, f"panel type {kind!r} is deprecated")
    panel_id = panel.get("id")
    if not isinstance(panel_id, int) or panel_id in seen_ids:
        yield Problem("panel-id-rule", where, f"panel id {panel_id!r} missing or not unique")
    else:
        seen_ids.add(panel_id)
    if not panel.get("title") or not panel.get("description"):
        yield Problem("panel-title-description-rule", where, "panel needs a title and a description")
    if kind in PANELS_WITHOUT_QUERIES:
        return
    if panel.get("datasource", {}).get("uid") not in DATASOURCE_REFS:
        yield Problem("panel-datasource-rule", where, "panel must use the $datasource variable")
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
    if unit not in VALID_UNITS and not str(unit).startswith(CUSTOM_UNIT_PREFIXES):
        yield Problem("panel-units-rule", where, f"no or invalid unit: {unit!r}")
    targets = panel.get("targets", [])
    if not targets:
        yield Problem("panel-no-targets-rule", where, "panel has no targets")
    ref_ids = [t.get("refId") for t in targets]
    if len(set(ref_ids)) != len(ref_ids) or not all(ref_ids):
        yield Problem("target-refid-rule", where, f"refIds must be set and unique: {ref_ids}")


def _target_rules(target: Mapping[str, Any], where: str) -> Iterator[Problem]:
    if target.get("datasource", {}).get("uid", "$datasource") not in DATASOURCE_REFS:
        yield Problem("panel-datasource-rule", where, "target must use the $datasource variable")
    expr = str(target.get("expr", ""))
    try:
        found = selectors(expr)
    except PromQLSyntaxError as exc:
        yield Problem("target-promql-rule", where, str(exc))
        return
    if not found:
        yield Problem("target-promql-rule", where, f"no selector in {expr!r}")
    for selector in found:
        yield from _selector_rules(selector, where, expr, found)


def _exact_delta(selector: Selector, found: Sequence[Selector]) -> bool:
    """`selector` is part of an event count: the same series, one $__interval earlier, is in the query."""
    return any(other.offset == EVENTS_OFFSET and other.same_series(selector) for other in found)


def _selector_rules(
    selector: Selector, where: str, expr: str, found: Sequence[Selector]
) -> Iterator[Problem]:
    matchers = {(label, op, value) for label, op, value in selector.matchers}
    for name in ("job", "instance"):
        if (name, "=~", f"${name}") not in matchers:
            yield Problem(
                f"target-{name}-rule", where, f'{selector.name or "{...}"} lacks {name}=~"${name}": {expr}'
            )
    if selector.function in PER_SECOND_FUNCTIONS and selector.range != "$__rate_interval":
        yield Problem(
            "target-rate-interval-rule", where, f"{selector.function}() must use $__rate_interval: {expr}"
        )
    if selector.function == "increase" and selector.range != "$__range":
        yield Problem(
            "target-event-count-rule",
            where,
            f"increase() over [{selector.range}] draws fractional events that change with zoom (and over "
            f"$__rate_interval counts one event in several points); count whole events per interval with "
            f"grafana.blocks.events, or total the range with [$__range]: {expr}",
        )
    is_counter = selector.name.endswith(("_total", "_bucket"))
    in_rate = selector.range is not None and selector.function in RATE_FUNCTIONS
    if is_counter and not in_rate and not _exact_delta(selector, found):
        yield Problem(
            "target-counter-agg-rule", where, f"counter {selector.name} outside rate/increase: {expr}"
        )


def _readability_rules(panel: Mapping[str, Any], where: str) -> Iterator[Problem]:
    """What a reader needs to read the panel right: units of rates, whole events, integer axes, tables."""
    kind = panel.get("type", "")
    if kind in PANELS_WITHOUT_QUERIES:
        return
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit = str(defaults.get("unit", ""))
    parsed: list[tuple[str, list[Selector]]] = []
    for target in panel.get("targets", []):
        expr = str(target.get("expr", ""))
        try:
            parsed.append((expr, selectors(expr)))
        except PromQLSyntaxError:
            return  # target-promql-rule reports it
    if not parsed:
        return
    draws_rate = any(
        s.function in PER_SECOND_FUNCTIONS and "histogram_quantile" not in expr
        for expr, found in parsed
        for s in found
    )
    if draws_rate and unit not in RATIO_UNITS and not _per_second(unit):
        yield Problem(
            "panel-rate-unit-rule",
            where,
            f"draws a per-second rate but its unit {unit!r} does not say /s (cps, Bps, count:USD/s, ...)",
        )
    events = any(_exact_delta(s, found) for _, found in parsed for s in found)
    custom = defaults.get("custom", {})
    if events and (custom.get("drawStyle") != "bars" or not panel.get("interval")):
        yield Problem(
            "panel-event-bars-rule",
            where,
            "counts events: draw bars (drawStyle bars) per fixed interval (a panel min interval)",
        )
    integer = all(_integer_valued(expr, found) for expr, found in parsed)
    if kind in ("timeseries", "stat") and integer and defaults.get("decimals") != 0:
        yield Problem(
            "panel-integer-axis-rule", where, "shows whole numbers only: set decimals 0 (an integer axis)"
        )
    info_only = all(_is_info(s.name) for _, found in parsed for s in found)
    if kind == "table" and info_only and not _hides_value_column(panel):
        yield Problem(
            "table-value-column-rule", where, "a table of info series (value always 1): hide the Value column"
        )


def _per_second(unit: str) -> bool:
    return unit in PER_SECOND_UNITS or (unit.startswith(CUSTOM_UNIT_PREFIXES) and unit.endswith("/s"))


def _integer_valued(expr: str, found: Sequence[Selector]) -> bool:
    """Only whole-valued series (or whole event counts), through nothing that makes fractions."""
    if any(token.text in _NON_INTEGER for token in tokenize(expr)):
        return False
    return all(s.name in INTEGER_METRICS or _exact_delta(s, found) for s in found)


def _is_info(name: str) -> bool:
    """A series whose value is always 1 and whose information is in its labels."""
    return name.endswith("_info") or name == "ALERTS"


def _hides_value_column(panel: Mapping[str, Any]) -> bool:
    return any(
        t.get("id") == "organize" and t.get("options", {}).get("excludeByName", {}).get("Value")
        for t in panel.get("transformations", [])
    )


def _grid_rules(model: Mapping[str, Any], title: str) -> Iterator[Problem]:
    occupied: dict[tuple[int, int], str] = {}
    for panel in model.get("panels", []):
        grid = panel.get("gridPos", {})
        x, y, w, h = (int(grid.get(k, -1)) for k in ("x", "y", "w", "h"))
        name = str(panel.get("title"))
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > 24:
            yield Problem("grid-rule", f"{title} / {name}", f"gridPos {grid} outside the 24-column grid")
            continue
        for cell in ((cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)):
            if cell in occupied:
                yield Problem("grid-rule", f"{title} / {name}", f"overlaps {occupied[cell]!r}")
                break
            occupied[cell] = name


def load(paths: Iterable[Path]) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]


def main(argv: Sequence[str] | None = None) -> int:
    from grafana.build import DASHBOARDS_DIR

    args = list(sys.argv[1:] if argv is None else argv)
    paths = [Path(a) for a in args] or sorted(DASHBOARDS_DIR.glob("*.json"))
    problems = lint_dashboards(load(paths))
    for problem in problems:
        print(problem)
    print(f"{len(paths)} dashboards, {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
