"""The same rules on both engines, and the shipped scaling-out configs checked by the real tools.

The rule files are read live from prometheus/rules/ (others add rules): every file must pass promtool and
load in `vmalert -dryRun` (which parses each expression as MetricsQL and each annotation template), with
the `-rule` pattern of the shipped deploy/victoriametrics/vmalert.args, so a new rule file is covered too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.rules import RULES_DIR
from tests.helpers import find_binary
from tests.scaling.stack import DEPLOY_DIR, render_args

pytestmark = pytest.mark.timeout(60)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def load(name: str) -> Any:
    return yaml.safe_load((DEPLOY_DIR / name).read_text())


def test_every_rule_file_passes_promtool() -> None:
    files = sorted(RULES_DIR.glob("*.yml"))
    assert files
    result = run(find_binary("promtool"), "check", "rules", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_file_loads_in_vmalert_dry_run_as_shipped() -> None:
    rule_flags = [a for a in render_args(DEPLOY_DIR / "vmalert.args", {}, {}) if a.startswith("-rule=")]
    pattern = Path(rule_flags[0].partition("=")[2])
    assert sorted(pattern.parent.glob(pattern.name)) == sorted(RULES_DIR.glob("*.yml")), "covers every file"
    result = run(find_binary("vmalert"), "-dryRun", *rule_flags, "-loggerLevel=ERROR")
    assert result.returncode == 0, result.stdout + result.stderr


def test_vmalert_dry_run_rejects_a_rule_it_cannot_parse(tmp_path: Path) -> None:
    """The check above can fail: vmalert parses expressions and templates in -dryRun."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "a:b:c", "expr": "sum(rate(x[5m])"}]}]})
    )
    result = run(find_binary("vmalert"), "-dryRun", f"-rule={bad}", "-loggerLevel=ERROR")
    assert result.returncode != 0 and "a:b:c" in result.stdout + result.stderr


def test_both_scrapers_scrape_the_same_targets_with_distinct_replica_labels() -> None:
    vmagent, prometheus = load("vmagent.yml"), load("prometheus-agent.yml")
    assert vmagent["scrape_configs"] == prometheus["scrape_configs"]
    labels = [vmagent["global"].pop("external_labels"), prometheus["global"].pop("external_labels")]
    assert vmagent["global"] == prometheus["global"], "same intervals"
    assert labels[0]["cluster"] == labels[1]["cluster"]
    assert labels[0]["prometheus_replica"] != labels[1]["prometheus_replica"]
    # VictoriaMetrics drops exactly the label that tells them apart, so their copies de-duplicate.
    assert load("relabel.yml") == [{"action": "labeldrop", "regex": "prometheus_replica"}]
    args = render_args(DEPLOY_DIR / "victoria-metrics.args", {}, {})
    assert f"-relabelConfig={DEPLOY_DIR / 'relabel.yml'}" in args
    assert f"-dedup.minScrapeInterval={vmagent['global']['scrape_interval']}" in args


def test_vmagent_accepts_its_scrape_config() -> None:
    result = run(
        find_binary("vmagent"),
        f"-promscrape.config={DEPLOY_DIR / 'vmagent.yml'}",
        "-promscrape.config.dryRun",
        "-loggerLevel=ERROR",
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("remote_write", [None, "mimir.yml", "thanos-receive.yml"])
def test_prometheus_agent_config_passes_promtool_with_each_remote_write(
    remote_write: str | None, tmp_path: Path
) -> None:
    config = load("prometheus-agent.yml")
    if remote_write is not None:
        example = load(f"remote-write/{remote_write}")
        assert set(example) == {"remote_write"}, "an example is a remote_write section to swap in"
        config["remote_write"] = example["remote_write"]
    path = tmp_path / "prometheus-agent.yml"
    path.write_text(yaml.safe_dump(config))
    result = run(find_binary("promtool"), "check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
