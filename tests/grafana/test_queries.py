"""Variable substitution as Grafana does it, and every query valid PromQL for the real parser (promtool)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from grafana.build import DASHBOARDS_DIR
from grafana.queries import (
    TimeContext,
    dashboard_exprs,
    format_value,
    parse_label_values,
    rate_interval,
    substitute,
)
from tests.fixtures.tools import promtool

PRODUCTION = TimeContext(interval=15, scrape_interval=15, range=3600)


def test_rate_interval_follows_grafana():
    # max($__interval + scrape interval, 4 x scrape interval)
    assert rate_interval(15, 15) == 60
    assert rate_interval(15, 120) == 135
    assert rate_interval(1, 1) == 4
    assert PRODUCTION.builtins()["__rate_interval"] == "60s"


def test_multi_values_are_regex_escaped_and_all_uses_the_all_value():
    assert format_value(["BTC-USD"]) == "BTC-USD"
    assert format_value(["BTC-USD", "1000PEPE.X-USD"]) == r"(BTC-USD|1000PEPE\.X-USD)"
    assert format_value(["a", "b"], all_value=".+") == ".+"


def test_substitute_replaces_every_form_and_refuses_unknown_variables():
    expr = 'rate(x{job=~"$job", instance=~"${instance}", market=~"[[market]]"}[$__rate_interval])'
    out = substitute(expr, {"job": ".+", "instance": ".+", "market": "ETH-USD"}, PRODUCTION)
    assert out == 'rate(x{job=~".+", instance=~".+", market=~"ETH-USD"}[60s])'
    with pytest.raises(KeyError, match="market"):
        substitute('x{market=~"$market"}', {}, PRODUCTION)


def test_label_values_queries_parse():
    assert parse_label_values('label_values(up{job=~"$job"}, instance)') == ('up{job=~"$job"}', "instance")
    assert parse_label_values("label_values(job)") == (None, "job")


def test_every_query_is_valid_promql_once_substituted(tmp_path: Path):
    """promtool parses each panel query (and each variable's selector) with Prometheus's own parser."""
    values = {"job": ".+", "instance": ".+", "market": "BTC-USD"}
    rules = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        model = json.loads(path.read_text(encoding="utf-8"))
        exprs = dashboard_exprs(model)
        rules += [
            {
                "record": f"check:{model['uid'].replace('-', '_')}:{i}",
                "expr": substitute(e, values, PRODUCTION),
            }
            for i, e in enumerate(exprs)
        ]
    assert len(rules) > 60
    rule_file = tmp_path / "dashboard-queries.yml"
    rule_file.write_text(
        yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8"
    )
    result = promtool("check", "rules", str(rule_file), timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
