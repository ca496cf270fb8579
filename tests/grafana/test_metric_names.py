"""Every metric a dashboard queries is one the exporter declares (issue 3's contract names), or one that
Prometheus or prometheus_client's process and GC collectors provide: a renamed metric fails here, before
any panel goes blank."""

from __future__ import annotations

import json

from exporter.metrics.catalog import CATALOG
from grafana.build import DASHBOARDS_DIR
from grafana.lint import selectors
from grafana.queries import (
    dashboard_exprs,
    panel_queries,
)

#: Series that come from elsewhere than the exporter's catalog.
FROM_PROMETHEUS = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS"}
FROM_PROCESS_AND_GC_COLLECTORS = {
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "python_gc_collections_total",
}


def exposed_names() -> set[str]:
    names = set()
    for spec in CATALOG:
        names.add(spec.name)
        if spec.kind == "histogram":
            names |= {f"{spec.name}_bucket", f"{spec.name}_sum", f"{spec.name}_count"}
    return names | FROM_PROMETHEUS | FROM_PROCESS_AND_GC_COLLECTORS


def test_dashboards_query_only_metrics_that_exist():
    known = exposed_names()
    used: dict[str, set[str]] = {}
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        model = json.loads(path.read_text(encoding="utf-8"))
        exprs = dashboard_exprs(model)
        for expr in exprs:
            for found in selectors(expr):
                used.setdefault(found.name, set()).add(model["uid"])
    unknown = {name: sorted(uids) for name, uids in used.items() if name not in known}
    assert unknown == {}


def test_the_dashboards_cover_every_contract_metric():
    """Each metric of the contract is on some panel (a metric nobody can see is a metric nobody watches)."""
    used = set()
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        for query in panel_queries(json.loads(path.read_text(encoding="utf-8"))):
            used |= {s.name.removesuffix("_bucket").removesuffix("_sum") for s in selectors(query.expr)}
    missing = sorted(spec.name for spec in CATALOG if spec.name not in used)
    assert missing == []
