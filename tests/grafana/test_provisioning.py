"""Provisioning parses, matches the stack's container paths and Prometheus's scrape interval, and the
dashboards reference only datasource and dashboard uids that exist."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from grafana.blocks import DATASOURCE_UID, SCRAPE_INTERVAL
from grafana.build import DASHBOARDS_DIR
from grafana.queries import panels, variable_definitions

REPO = Path(__file__).resolve().parents[2]
PROVISIONING = REPO / "grafana" / "provisioning"
CONTAINER_PROVISIONING = "/etc/grafana/provisioning"
CONTAINER_DASHBOARDS = "/var/lib/grafana/dashboards"


def load_yaml(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), path
    return doc


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS_DIR.glob("*.json"))]


def provisioned_datasources() -> list[dict[str, Any]]:
    found = []
    for path in sorted((PROVISIONING / "datasources").glob("*.y*ml")):
        doc = load_yaml(path)
        assert doc["apiVersion"] == 1
        found += doc["datasources"]
    return found


def test_the_prometheus_datasource_has_the_fixed_uid_and_the_scrape_interval():
    (datasource,) = provisioned_datasources()
    assert datasource["uid"] == DATASOURCE_UID
    assert datasource["type"] == "prometheus"
    assert datasource["access"] == "proxy"
    assert datasource["isDefault"] is True
    assert datasource["jsonData"]["timeInterval"] == SCRAPE_INTERVAL


def test_time_interval_equals_the_production_scrape_interval():
    """$__rate_interval is 4 x timeInterval: it must be the interval Prometheus really scrapes at."""
    prometheus = load_yaml(REPO / "prometheus.yml")
    (datasource,) = provisioned_datasources()
    assert datasource["jsonData"]["timeInterval"] == prometheus["global"]["scrape_interval"]


def test_the_dashboard_provider_loads_the_generated_folder_where_the_stack_mounts_it():
    doc = load_yaml(PROVISIONING / "dashboards" / "dashboards.yml")
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == CONTAINER_DASHBOARDS
    assert provider["allowUiUpdates"] is False, "dashboards are code: UI edits would be lost"
    compose = load_yaml(REPO / "docker-compose.yml")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["grafana"]["volumes"]}
    assert (REPO / mounts[CONTAINER_DASHBOARDS]).resolve() == DASHBOARDS_DIR
    assert (REPO / mounts[CONTAINER_PROVISIONING]).resolve() == PROVISIONING


def test_the_datasource_url_names_the_prometheus_service_of_the_stack():
    (datasource,) = provisioned_datasources()
    compose = load_yaml(REPO / "docker-compose.yml")
    host_port = datasource["url"].split("://", 1)[1].rstrip("/")
    host, port = host_port.split(":")
    assert host in compose["services"]
    assert port == "9090"


def test_dashboards_reference_only_uids_that_exist():
    datasource_uids = {d["uid"] for d in provisioned_datasources()}
    models = dashboards()
    dashboard_uids = {m["uid"] for m in models}
    for model in models:
        title = model["title"]
        (variable,) = [v for v in variable_definitions(model) if v["type"] == "datasource"]
        assert variable["current"]["value"] in datasource_uids, title
        refs = [p.get("datasource", {}) for p in panels(model)]
        refs += [t.get("datasource", {}) for p in panels(model) for t in p.get("targets", [])]
        refs += [v.get("datasource", {}) for v in variable_definitions(model) if v["type"] == "query"]
        for ref in refs:
            uid = ref.get("uid", "$datasource")
            assert uid in ("$datasource", "${datasource}") or uid in datasource_uids, f"{title}: {uid}"
        for link in model["links"]:
            assert link["url"].removeprefix("/d/") in dashboard_uids, f"{title}: {link}"
        assert len(model["links"]) == len(dashboard_uids) - 1, "every dashboard links to every other"
