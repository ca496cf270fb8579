"""The shipped Prometheus and Alertmanager configuration, checked by the real tools and for consistency.

promtool and amtool validate the files as their binaries will load them; the consistency checks keep the
alerts, the runbooks, the metric catalog and the Alertmanager routes in step with each other.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.metrics.catalog import CATALOG
from tests.fixtures.rules import (
    ALERTMANAGER_YML,
    PROMETHEUS_YML,
    REPO_ROOT,
    RULE_TESTS_DIR,
    RULES_DIR,
    parse_duration,
    scale_duration,
    scale_expr,
    write_scaled_rules,
)
from tests.fixtures.tools import amtool, promtool

RUNBOOKS = REPO_ROOT / "docs" / "runbooks.md"
REQUIRED_ALERTS = {
    "DydxExporterDown",
    "DydxFeedDisconnected",
    "DydxFeedStale",
    "DydxBlockHeightStalled",
    "DydxHighErrorRate",
    "DydxHighFeedLatency",
    "DydxReconnectStorm",
    "DydxOrderbookCrossed",
    "DydxMessageGaps",
    "Watchdog",
}
SEVERITIES = {"critical", "warning", "info"}
RECORD_NAME = re.compile(r"^[a-z][a-z_]*:[a-z][a-z0-9_]*:[a-z0-9_]+$")
RECORD_REF = re.compile(r"\b[a-z][a-z_]*:[a-z][a-z0-9_]*:[a-z0-9_]+\b")
METRIC_REF = re.compile(r"\bdydx_[a-z0-9_]+\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def all_rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in all_rules() if "alert" in rule}


def github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


# --- The real tools --------------------------------------------------------------------------------------


def test_promtool_accepts_prometheus_yml_and_the_rules_it_loads() -> None:
    result = promtool("check", "config", str(PROMETHEUS_YML))
    assert result.returncode == 0, result.stdout + result.stderr
    # The glob in rule_files must reach every rule file (promtool reports how many it found).
    assert f"SUCCESS: {len(rule_files())} rule files found" in result.stdout + result.stderr


def test_promtool_accepts_every_rule_file() -> None:
    result = promtool("check", "rules", *map(str, rule_files()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    tests = sorted(RULE_TESTS_DIR.glob("*.yml"))
    assert tests
    result = promtool("test", "rules", *map(str, tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_promtool_unit_test() -> None:
    tested: set[str] = set()
    for path in RULE_TESTS_DIR.glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    tested.add(check["alertname"])
    assert set(alerts()) <= tested, f"alerts never tested firing: {set(alerts()) - tested}"


def test_amtool_accepts_alertmanager_yml() -> None:
    result = amtool("check-config", str(ALERTMANAGER_YML))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=Watchdog", "severity=info"], "watchdog"),
        (["alertname=DydxExporterDown", "severity=critical"], "critical"),
        (["alertname=DydxFeedStale", "severity=warning"], "warning"),
        (["alertname=Something", "severity=info"], "info"),
        (["alertname=Unlabelled"], "default"),
    ],
)
def test_alertmanager_routes_by_severity_and_watchdog_apart(labels: list[str], receiver: str) -> None:
    result = amtool("config", "routes", "test", f"--config.file={ALERTMANAGER_YML}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


# --- Consistency -----------------------------------------------------------------------------------------


def test_the_required_alerts_exist() -> None:
    assert set(alerts()) >= REQUIRED_ALERTS


@pytest.mark.parametrize("name", sorted(REQUIRED_ALERTS | set(alerts())))
def test_alert_has_severity_for_and_annotations(name: str) -> None:
    rule = alerts()[name]
    assert rule["labels"]["severity"] in SEVERITIES
    assert "for" in rule, "state the `for:` explicitly, even when it is 0m"
    parse_duration(rule["for"])
    annotations = rule["annotations"]
    assert {"summary", "description", "runbook_url"} <= set(annotations)
    assert annotations["runbook_url"].endswith("/docs/runbooks.md#" + name.lower())


def test_every_alert_has_a_runbook_section() -> None:
    headings = re.findall(r"^## (.+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    anchors = {github_anchor(h) for h in headings}
    for name, rule in alerts().items():
        anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor in anchors, f"{name}: no section '## {name}' in docs/runbooks.md"


def test_feed_alerts_are_inhibited_by_exporter_down() -> None:
    config = yaml.safe_load(ALERTMANAGER_YML.read_text())
    rules = [r for r in config["inhibit_rules"] if 'alertname = "DydxExporterDown"' in r["source_matchers"]]
    assert len(rules) == 1
    target = rules[0]["target_matchers"][0]
    pattern = re.search(r'alertname =~ "(.+)"', target)
    assert pattern is not None
    feed_alerts = set(alerts()) - {"DydxExporterDown", "Watchdog"}
    assert set(pattern.group(1).split("|")) == feed_alerts
    assert rules[0]["equal"] == ["job", "instance"]


def test_recording_rules_follow_level_metric_operations() -> None:
    for rule in all_rules():
        if "record" in rule:
            assert RECORD_NAME.match(rule["record"]), rule["record"]


def test_rules_reference_only_catalog_metrics_and_defined_records() -> None:
    catalog = {spec.name: spec for spec in CATALOG}
    records = {rule["record"] for rule in all_rules() if "record" in rule}
    for rule in all_rules():
        expr = rule["expr"]
        for ref in RECORD_REF.findall(expr):
            assert ref in records, f"{rule.get('record') or rule.get('alert')}: undefined record {ref}"
        for ref in METRIC_REF.findall(RECORD_REF.sub(" ", expr)):
            base = ref
            if ref not in catalog:
                base = next((ref.removesuffix(s) for s in HISTOGRAM_SUFFIXES if ref.endswith(s)), ref)
                assert catalog.get(base) is not None and catalog[base].kind == "histogram", (
                    f"{rule.get('record') or rule.get('alert')}: {ref} is not in exporter/metrics/catalog.py"
                )


def test_prometheus_yml_labels_every_exporter_target_with_shard_and_replica() -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    assert config["global"]["scrape_interval"] == "15s"
    assert config["global"]["external_labels"]
    jobs = {c["job_name"]: c for c in config["scrape_configs"]}
    assert {"dydx-exporter", "dydx-simulator"} <= set(jobs)
    for static in jobs["dydx-exporter"]["static_configs"]:
        assert {"shard", "replica"} <= set(static["labels"])


# --- Rule scaling for the end-to-end test ----------------------------------------------------------------


def test_scale_duration() -> None:
    assert scale_duration("5m", 1 / 30) == "10s"
    assert scale_duration("1m", 1 / 30, minimum=4) == "4s"
    assert scale_duration("1h30m", 0.5) == "2700s"
    assert scale_duration("1s", 0.25) == "250ms"
    assert scale_duration("0m", 0.1) == "0s"


def test_scale_expr_rewrites_ranges_subqueries_and_offsets_only() -> None:
    expr = 'rate(x{a=~"b"}[5m]) + max_over_time(y[10m:1m]) - z offset 1h and w[2m:]'
    assert (
        scale_expr(expr, 0.1, 4)
        == 'rate(x{a=~"b"}[30s]) + max_over_time(y[60s:6s]) - z offset 360s and w[12s:]'
    )


def test_scaled_rules_are_valid_and_keep_the_alert_expressions(tmp_path: Path) -> None:
    written = write_scaled_rules(tmp_path, 1 / 30, min_range=4)
    result = promtool("check", "rules", *map(str, written))
    assert result.returncode == 0, result.stdout + result.stderr
    scaled = {
        r["alert"]: r
        for p in written
        for g in yaml.safe_load(p.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    assert scaled["DydxHighErrorRate"]["for"] == "10s"
    assert "[4s]" in scaled["DydxBlockHeightStalled"]["expr"]
    # Only durations change: with them normalised, the expressions are the real ones.
    duration = re.compile(r"\[[0-9a-z:]+\]")
    for name, rule in alerts().items():
        assert duration.sub("[]", scaled[name]["expr"]) == duration.sub("[]", rule["expr"])
