"""`python -m bench --quick` end to end: every scenario runs and its figures hang together. No timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.runner import run
from bench.scenarios import SCENARIOS, Plan


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_quick_run_produces_every_scenario_with_consistent_counts(tmp_path: Path) -> None:
    results, path, text = run(SCENARIOS, quick=True, results_dir=tmp_path)
    plan = Plan.quick()

    assert path.parent == tmp_path
    assert json.loads(path.read_text())["scenarios"] == list(SCENARIOS)
    for name in SCENARIOS:
        assert name in results, name

    # Ingest: every consumer saw every frame the source sent, and counted every update.
    for label, workload in results["ingest"]["workloads"].items():
        for kind in ("bare", "naive", "pipeline", "exporter"):
            row = workload[kind]
            assert row["counts_consistent"], (label, kind)
            assert row["updates"] > 0 and row["updates_per_cpu_s"] > 0, (label, kind)
        assert workload["null"]["updates_per_s"] > 0
        assert set(workload["ratios"]) >= {"exporter_vs_bare_cpu", "exporter_vs_naive_cpu"}

    # Latency: every data frame timed, the source scraped the exporter's /metrics at least once.
    scraped = results["latency"]["with_scrapes"]
    assert scraped["counts_consistent"]
    assert scraped["latency_us"]["samples"] == scraped["frames"] > 0
    assert scraped["scrapes"]["count"] >= 1 and scraped["scrapes"]["failed"] == 0
    assert results["latency"]["no_scrapes"]["scrapes"]["count"] == 0

    # Scrape: one row per market count, and more markets mean more samples.
    rows = results["scrape"]["rows"]
    assert [r["markets"] for r in rows] == list(plan.scrape_markets)
    assert all(r["text_bytes"] > r["gzip_bytes"] > 0 for r in rows)
    assert [r["samples"] for r in rows] == sorted(r["samples"] for r in rows)

    # Footprint: RSS sampled at each mark of the soak, all updates accounted for.
    soak = results["footprint"]["soak"]
    assert soak["counts_consistent"]
    assert len(soak["rss_mb_at"]) == 3
    assert results["footprint"]["steady"]["rss_mb"] > 0

    # Growth: the whole grid.
    paced = results["growth"]["paced"]
    assert {(r["markets"], r["rate_target"]) for r in paced} == {
        (m, r) for m in plan.growth_markets for r in plan.growth_rates
    }
    assert all(r["counts_consistent"] for r in paced + results["growth"]["blast"])

    for heading in ("### Ingest", "### Latency", "### Scrape", "### Footprint", "### Growth", "### Targets"):
        assert heading in text
