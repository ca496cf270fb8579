"""The Helm chart deploy/helm/dydx-exporter, linted and rendered by Helm's own Go SDK (helm-python-sdk),
every object checked against the Kubernetes schemas (kubernetes-validate), what it passes the exporter fed
to the exporter's real option parsing, and its PrometheusRule run through promtool with the project's own
rule tests. Nothing here needs a cluster; the whole file takes about 10 s.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import textwrap
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from deploy.helm import generate
from exporter.config import OPTIONS, Settings
from tests.deploy.chart import (
    CHART,
    NAMESPACE,
    VALUES_FILES,
    container,
    load_values,
    materialize,
    of_kind,
    pod_labels,
    regenerated_chart,
    relabel_configs,
    render,
)
from tests.fixtures.tools import promtool
from tests.stack.certs import CertificateAuthority

REPO = generate.REPO
#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas shipped.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version())


# --- generated parts --------------------------------------------------------------------------------------


def test_the_generated_files_match_the_repo():
    """files/rules, files/dashboards and the schema's options are what `make helm` makes of the live repo."""
    problems = generate.stale()
    assert not problems, f"stale (run `make helm`): {problems}"


def test_the_prometheus_rule_is_the_repo_rules_and_passes_their_promtool_tests(tmp_path):
    """The rendered PrometheusRule holds exactly the groups of prometheus/rules/*.yml, and each promtool test
    file of prometheus/tests/ passes against the rendered groups of the rule files it names."""
    chart = regenerated_chart(tmp_path)
    (rule,) = of_kind(render(load_values("sharded-ha-values.yaml"), chart), "PrometheusRule")
    rendered = {group["name"]: group for group in rule["spec"]["groups"]}
    repo_groups = {
        path: yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for path in sorted((REPO / "prometheus" / "rules").glob("*.yml"))
    }
    flat = [group for groups in repo_groups.values() for group in groups]
    assert rule["spec"]["groups"] == flat

    tests = sorted((REPO / "prometheus" / "tests").glob("*.yml"))
    assert tests
    for test_file in tests:
        spec = yaml.safe_load(test_file.read_text(encoding="utf-8"))
        names = [
            group["name"]
            for rules in spec["rule_files"]
            for group in repo_groups[(test_file.parent / rules).resolve()]
        ]
        rules_file = tmp_path / f"{test_file.stem}.rules.yml"
        rules_file.write_text(
            yaml.safe_dump({"groups": [rendered[name] for name in names]}), encoding="utf-8"
        )
        spec["rule_files"] = [str(rules_file)]
        copy = tmp_path / test_file.name
        copy.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        result = promtool("test", "rules", str(copy), timeout=120)
        assert result.returncode == 0, f"{test_file.name}:\n{result.stdout}{result.stderr}"


def test_the_dashboard_configmaps_are_the_repo_dashboards_for_the_grafana_sidecar(tmp_path):
    values = load_values("sharded-ha-values.yaml")
    maps = {
        name: configmap
        for configmap in of_kind(render(values, regenerated_chart(tmp_path)), "ConfigMap")
        for name in configmap["data"]
        if name.endswith(".json")
    }
    live = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
    assert live and set(maps) == {path.name for path in live}
    for path in live:
        configmap = maps[path.name]
        assert configmap["data"][path.name] == path.read_text(encoding="utf-8").rstrip("\n")
        assert json.loads(configmap["data"][path.name])["uid"]
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert configmap["metadata"]["annotations"]["grafana_folder"] == "dYdX"


# --- lint, schema, Kubernetes validity -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_the_chart_lints_clean(name):
    report = helm_python.lint(CHART, load_values(name), strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_every_rendered_object_is_valid_kubernetes(name):
    objects = render(load_values(name))
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount"} <= kinds
    for obj, version in itertools.product(objects, KUBE_VERSIONS):
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # Prometheus Operator CRDs: no schema here; see test_operator_objects_use_known_fields
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(
                f"{name}: {obj['kind']} {obj['metadata']['name']} (k8s {version}): {exc}"
            ) from None


def test_the_readme_scrape_config_for_plain_prometheus_labels_targets_as_the_service_monitor_does(tmp_path):
    """The README's kubernetes_sd_configs job for clusters without the operator: promtool accepts it, it
    keeps the chart's pods, and it makes instance, shard and replica exactly as the ServiceMonitor does."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("**Without the Prometheus Operator**") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block, "README: the scrape config for plain Prometheus"
    config = yaml.safe_load(textwrap.dedent(block.group(1)))
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "dydx-exporter"
    (discovery,) = job["kubernetes_sd_configs"]
    assert discovery["role"] == "pod", "the relabelings read __meta_kubernetes_pod_* labels"
    # Debian builds Prometheus without Kubernetes discovery: promtool checks the rest around a static target.
    checkable = {k: v for k, v in job.items() if k != "kubernetes_sd_configs"}
    checkable["static_configs"] = [{"targets": ["x:1"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump({"scrape_configs": [checkable]}), encoding="utf-8")
    check = promtool("check", "config", str(path), timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr

    objects = render({})
    (deployment,) = of_kind(objects, "Deployment")
    keeps = {
        step["source_labels"][0]: step["regex"]
        for step in job["relabel_configs"]
        if step.get("action") == "keep"
    }
    assert (
        keeps["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
        == pod_labels(deployment)["app.kubernetes.io/name"]
    )
    assert keeps["__meta_kubernetes_pod_container_port_name"] == container(deployment)["ports"][0]["name"]
    (monitor,) = of_kind(render({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")
    made = {"instance", "shard", "replica"}

    def steps(configs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {
            c["target_label"]: {k: v for k, v in c.items() if k != "action"}
            for c in configs
            if c.get("target_label") in made
        }

    readme_steps = steps(job["relabel_configs"])
    assert set(readme_steps) == made
    assert readme_steps == steps(relabel_configs(monitor["spec"]["endpoints"][0]))


#: Fields of monitoring.coreos.com/v1 the chart may write (the operator's API reference), to catch a
#: misspelt one: kubernetes-validate has no schema for CRDs, and an unknown field is silently dropped.
# fmt: off
OPERATOR_FIELDS = {
    "ServiceMonitor": {
        "jobLabel", "targetLabels", "podTargetLabels", "selector", "namespaceSelector", "endpoints",
    },
    "endpoint": {
        "port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout", "tlsConfig",
        "basicAuth", "authorization", "bearerTokenSecret", "honorLabels", "honorTimestamps", "relabelings",
        "metricRelabelings", "followRedirects", "enableHttp2", "filterRunning", "proxyUrl",
    },
    "relabeling": {"sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action"},
    "PrometheusRule": {"groups"},
}
# fmt: on


def test_operator_objects_use_known_fields():
    objects = render(load_values("sharded-ha-values.yaml"))
    (monitor,) = of_kind(objects, "ServiceMonitor")
    assert set(monitor["spec"]) <= OPERATOR_FIELDS["ServiceMonitor"]
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= OPERATOR_FIELDS["endpoint"], set(endpoint) - OPERATOR_FIELDS["endpoint"]
        for step in endpoint["relabelings"]:
            assert set(step) <= OPERATOR_FIELDS["relabeling"], step
    (rule,) = of_kind(objects, "PrometheusRule")
    assert set(rule["spec"]) <= OPERATOR_FIELDS["PrometheusRule"]
    for obj in (monitor, rule):
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        assert obj["metadata"]["namespace"] == NAMESPACE


def test_a_typo_in_values_fails_at_install():
    chart = helm_python.Chart.load(CHART)
    chart.validate_schema(load_values("sharded-ha-values.yaml"))
    for wrong in (
        {"shard": 2},
        {"shards": 0},
        {"replicasPerShard": "2"},
        {"config": {"feed.backof-max": "2m"}},
        {"config": {"shard": "0/2"}},  # set by the chart from `shards`
        {"serviceMonitor": {"enable": True}},
    ):
        with pytest.raises(helm_python.HelmValuesError):
            chart.validate_schema(wrong)


# --- what the pods run -----------------------------------------------------------------------------------


def test_deployments_are_non_root_read_only_and_probed():
    for deployment in of_kind(render({}), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        box = container(deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["automountServiceAccountToken"] is False
        assert box["securityContext"]["readOnlyRootFilesystem"] is True
        assert box["securityContext"]["allowPrivilegeEscalation"] is False
        assert box["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert box["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert box["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert box["resources"]["requests"]["memory"] and box["resources"]["requests"]["cpu"]


def test_shards_times_replicas_pods_each_with_its_shard_flag_and_labels():
    objects = render(load_values("sharded-ha-values.yaml"))
    deployments = of_kind(objects, "Deployment")
    assert len(deployments) == 4
    seen = set()
    for deployment in deployments:
        assert deployment["spec"]["replicas"] == 1
        labels = pod_labels(deployment)
        index, count = re.fullmatch(r"(\d+)-of-(\d+)", labels["dydx-exporter/shard"]).groups()  # type: ignore[union-attr]
        assert f"--shard={index}/{count}" in container(deployment)["args"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        seen.add((f"{index}/{count}", labels["dydx-exporter/replica"]))
    assert seen == {("0/2", "a"), ("0/2", "b"), ("1/2", "a"), ("1/2", "b")}
    names = [d["metadata"]["name"] for d in deployments]
    assert len(set(names)) == 4 and all(len(n) <= 63 for n in names)
    (service,) = of_kind(objects, "Service")
    for deployment in deployments:
        assert service["spec"]["selector"].items() <= pod_labels(deployment).items()
    # Scraped while not ready: an exporter whose feed is down is the one the alerts are about.
    assert service["spec"]["publishNotReadyAddresses"] is True
    # A drain takes one replica of a shard at a time: each budget selects exactly its shard's pair.
    budgets = of_kind(objects, "PodDisruptionBudget")
    assert len(budgets) == 2
    for budget in budgets:
        assert budget["spec"]["maxUnavailable"] == 1
        selector = budget["spec"]["selector"]["matchLabels"].items()
        pair = {
            pod_labels(d)["dydx-exporter/shard"] for d in deployments if selector <= pod_labels(d).items()
        }
        assert len(pair) == 1 and sum(selector <= pod_labels(d).items() for d in deployments) == 2
    assert not of_kind(render({}), "PodDisruptionBudget"), "no budget for a single replica"


def test_the_service_monitor_selects_the_service_and_its_relabelings_are_valid_prometheus(tmp_path):
    """What the relabelings do to targets is proven with real exporters and a real Prometheus in
    test_chart_e2e.py; here: they select the chart's Service and promtool accepts them."""
    objects = render(load_values("sharded-ha-values.yaml"))
    (monitor,) = of_kind(objects, "ServiceMonitor")
    (service,) = of_kind(objects, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["scheme"] == "https" and endpoint["tlsConfig"] and endpoint["basicAuth"]
    job = {
        "job_name": "x",
        "static_configs": [{"targets": ["x:1"]}],
        "relabel_configs": relabel_configs(endpoint),
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump({"scrape_configs": [job]}), encoding="utf-8")
    check = promtool("check", "config", str(path), timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


def every_option_values() -> dict[str, Any]:
    """A value for every option the `config` values take: its default, so the exporter accepts all."""
    return {o.flag: o.default for o in OPTIONS if o.flag not in generate.CHART_SET}


def test_every_exporter_option_is_reachable_through_values_and_accepted_by_the_exporter(tmp_path):
    """Every option of the table: either a key of `config`, which lands in --config.file, or one the chart
    sets itself; the rendered argv and file, parsed by the exporter's own Settings, take each from there."""
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    keys = set(schema["properties"]["config"]["properties"])
    flags = {o.flag for o in OPTIONS}
    assert keys | set(generate.CHART_SET) == flags, "run `make helm`"
    assert not keys & set(generate.CHART_SET)

    ca = CertificateAuthority.create(tmp_path, "test-ca")
    server = ca.issue(tmp_path, "dydx-exporter", server=True, sans=("dydx-exporter",))
    values = {
        "shards": 3,
        "port": 9999,
        "config": every_option_values(),
        "webConfig": {
            "enabled": True,
            "config": {"tls_server_config": {"cert_file": "tls.crt", "key_file": "tls.key"}},
            "files": {"tls.crt": server.cert_file.read_text(), "tls.key": server.key_file.read_text()},
        },
    }
    objects = render(values)
    mounted = tmp_path / "mounted"
    argv = materialize(objects, of_kind(objects, "Deployment")[0], mounted)
    settings = Settings.from_sources(argv, {})
    for flag in flags:
        source = settings.sources[flag]
        if flag in generate.CHART_SET:
            assert source.startswith("flag "), f"{flag}: {source}"
        else:
            assert source.startswith(str(mounted / "config.yaml")), f"{flag}: {source}"
    assert (settings.shard_index, settings.shard_count) == (0, 3)
    assert settings.listen_port == 9999
    box = container(of_kind(objects, "Deployment")[0])
    assert box["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    check = promtool("check", "web-config", str(mounted / "web.yml"), timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


def test_config_values_of_every_shape_reach_the_exporter_typed(tmp_path):
    """Lists, booleans and numbers in values arrive as the exporter reads them; null keeps a default."""
    values = {
        "config": {
            "markets": ["BTC-USD", "ETH-USD"],
            "candles.resolutions": ["1MIN", "5MINS"],
            "feed.batched": True,
            "feed.subscribe-rate": 12.5,
            "feed.backoff-max": "2m",
            "log.level": None,
        }
    }
    objects = render(values)
    settings = Settings.from_sources(materialize(objects, of_kind(objects, "Deployment")[0], tmp_path), {})
    assert settings.markets == ("BTC-USD", "ETH-USD")
    assert settings.candle_resolutions == ("1MIN", "5MINS")
    assert settings.feed.batched is True
    assert settings.feed.subscribe_rate == 12.5
    assert settings.feed.backoff_max == 120.0
    assert settings.sources["log.level"].startswith("default")


def test_basic_auth_probes_send_the_configured_header():
    header = {"name": "Authorization", "value": "Basic " + base64.b64encode(b"probe:secret").decode()}
    (deployment, *_) = of_kind(render({"probes": {"httpHeaders": [header]}}), "Deployment")
    for probe in ("livenessProbe", "readinessProbe"):
        assert container(deployment)[probe]["httpGet"]["httpHeaders"] == [header]
