"""The Helm chart as tests see it: rendered by Helm's own Go SDK (helm-python-sdk), its objects as dicts,
and the parts a test can run on this machine (a pod's argv with its mounted files; the ServiceMonitor's
relabelings as Prometheus relabel_configs).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import helm_python
import yaml

from deploy.helm import generate
from tests.groundtruth.support import FAST_FLAGS

CHART = generate.CHART
VALUES_FILES = {path.name: path for path in sorted((CHART / "ci").glob("*.yaml"))}
VALUES_FILES["values.yaml"] = CHART / "values.yaml"
RELEASE, NAMESPACE = "dydx", "monitoring"
CONTAINER_CONFIG = "/etc/dydx-exporter/config/config.yaml"
CONTAINER_WEB = "/etc/dydx-exporter/web/"

Object = dict[str, Any]


def fast_config() -> dict[str, Any]:
    """The suite's short loopback timings (tests.groundtruth.support.FAST_FLAGS) as `config` values."""
    return dict(flag.removeprefix("--").split("=", 1) for flag in FAST_FLAGS)


def load_values(name: str) -> dict[str, Any]:
    """A values file of the chart's ci/ folder, or the chart's own values.yaml."""
    values = yaml.safe_load(VALUES_FILES[name].read_text(encoding="utf-8")) or {}
    assert isinstance(values, dict)
    return values


def regenerated_chart(directory: Path) -> Path:
    """A copy of the chart under `directory` with what `make helm` would write now: the templates meet the
    live rules, dashboards and options even while the committed copies are stale (one test says that)."""
    copy = directory / CHART.name
    shutil.copytree(CHART, copy, ignore=shutil.ignore_patterns("files"))
    for path, text in generate.expected().items():
        target = copy / path.relative_to(CHART)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return copy


def render(values: Mapping[str, Any], chart_dir: Path = CHART) -> list[Object]:
    """Every object the chart renders for `values`, as `helm template` would."""
    chart = helm_python.Chart.load(chart_dir)
    manifests = chart.render(dict(values), name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects: list[Object] = []
    for path, text in sorted(manifests.items()):
        if not path.endswith("NOTES.txt"):
            objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def of_kind(objects: list[Object], kind: str) -> list[Object]:
    return [o for o in objects if o["kind"] == kind]


def container(deployment: Mapping[str, Any]) -> Object:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(only, dict)
    return only


def pod_labels(deployment: Mapping[str, Any]) -> dict[str, str]:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert isinstance(labels, dict)
    return labels


def config_file(objects: list[Object]) -> dict[str, Any]:
    """The exporter's --config.file, as the chart's ConfigMap holds it."""
    (configmap,) = [o for o in of_kind(objects, "ConfigMap") if "config.yaml" in o["data"]]
    loaded = yaml.safe_load(configmap["data"]["config.yaml"])
    assert isinstance(loaded, dict)
    return loaded


def materialize(objects: list[Object], deployment: Mapping[str, Any], directory: Path) -> list[str]:
    """The pod's argv, with the ConfigMap and the web config Secret written under `directory` as the
    kubelet mounts them, and the argv's paths pointing there."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(config_file(objects)), encoding="utf-8")
    for secret in of_kind(objects, "Secret"):
        for key, text in secret.get("stringData", {}).items():
            (directory / key).write_text(text, encoding="utf-8")
    return [
        arg.replace(CONTAINER_CONFIG, str(directory / "config.yaml")).replace(CONTAINER_WEB, f"{directory}/")
        for arg in container(deployment)["args"]
    ]


def relabel_configs(endpoint: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A ServiceMonitor endpoint's `relabelings` as Prometheus `relabel_configs` (the operator's mapping:
    the same fields, camelCase → snake_case)."""
    return [
        {re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), key): value for key, value in step.items()}
        for step in endpoint["relabelings"]
    ]


def discovery_labels(
    deployment: Mapping[str, Any], service: Mapping[str, Any], pod_name: str, endpoint_port: str
) -> dict[str, str]:
    """What the Prometheus Operator's ServiceMonitor config gives one pod's target before the endpoint's
    own relabelings: Kubernetes service discovery's `__meta_kubernetes_pod_*` labels and the target labels
    the operator adds (namespace, service, pod, container, endpoint)."""
    labels = {
        "namespace": NAMESPACE,
        "service": service["metadata"]["name"],
        "pod": pod_name,
        "container": container(deployment)["name"],
        "endpoint": endpoint_port,
        "__meta_kubernetes_pod_name": pod_name,
    }
    for key, value in pod_labels(deployment).items():
        labels["__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)] = value
    return labels
