"""Two shards of two replicas as the Helm chart runs them, scraped as its ServiceMonitor scrapes them,
under its PrometheusRule: every trade is counted once fleet-wide.

Each of the four rendered Deployments becomes a real `dydx-exporter` process with the pod's argv and the
ConfigMap's --config.file (only the listen address moves to a free loopback port), against one simulator.
A real Prometheus scrapes them with the ServiceMonitor's relabelings applied to the labels Kubernetes
discovery and the operator would give each pod (the operator's `pod` label included), and evaluates the
rendered PrometheusRule. Then one exporter behind the chart's web config Secret, probed as the rendered
probes say and scraped as the ServiceMonitor would. About 16 s for both.
"""

from __future__ import annotations

import base64
import contextlib
import ssl
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import yaml

from exporter.simulator.server import Simulator
from tests.deploy import chart
from tests.fixtures.prom import PrometheusFactory
from tests.fixtures.simulator import SimulatorFactory
from tests.groundtruth.support import CliExporter, pause
from tests.helpers import Samples, metric_sum, scrape, wait_for
from tests.stack.certs import CertificateAuthority

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]


def exporter_config(sim: Simulator) -> dict[str, Any]:
    """The chart's `config` value: the tests' short timings, against `sim`."""
    return {**chart.fast_config(), "dydx.ws-url": sim.ws_url, "dydx.rest-url": sim.base_url}


async def start_pod(
    sim: Simulator, objects: list[chart.Object], deployment: Mapping[str, Any], directory: Path
) -> CliExporter:
    """A rendered Deployment as a real `dydx-exporter` process: the pod's argv and its mounted files under
    `directory`, only the listen address moved to a free loopback port. The caller stops it."""
    argv = [
        "--web.listen-address=127.0.0.1:0" if arg.startswith("--web.listen-address=") else arg
        for arg in chart.materialize(objects, deployment, directory)
    ]
    return await CliExporter.start(sim, argv=argv)


def trades_by_market_side(samples: Samples) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for (name, labels), value in samples.items():
        if name == "dydx_trades_total":
            found = dict(labels)
            out[found["market"], found["side"]] = value
    return out


async def settled(urls: Sequence[str], polls: int = 3) -> list[Samples]:
    """With the simulator paused: every exporter's samples once its dydx_updates_total has stayed the same
    over `polls` polls 0.3 s apart (longer than a batch interval). Several exporters share the simulator,
    so its truth (one consumer's view) cannot say when each has drained."""
    history: list[tuple[float, ...]] = []
    last: list[Samples] = []

    async def still() -> bool:
        nonlocal last
        last = [await scrape(url) for url in urls]
        history.append(tuple(metric_sum(samples, "dydx_updates_total") for samples in last))
        return len(history) >= polls and len(set(history[-polls:])) == 1

    await wait_for(still, timeout=20, interval=0.3, message="every exporter's update counts settled")
    return last


async def test_two_shards_of_two_replicas_count_every_trade_once(
    tmp_path, simulator_factory: SimulatorFactory, prometheus_factory: PrometheusFactory
):
    sim = await simulator_factory(markets=8)
    values = {
        "shards": 2,
        "replicasPerShard": 2,
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "config": exporter_config(sim),
    }
    objects = chart.render(values, chart.regenerated_chart(tmp_path))
    (monitor,) = chart.of_kind(objects, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    (service,) = chart.of_kind(objects, "Service")
    (rule,) = chart.of_kind(objects, "PrometheusRule")
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")

    async with contextlib.AsyncExitStack() as stack:
        pods: dict[str, CliExporter] = {}
        static_configs = []
        for deployment in chart.of_kind(objects, "Deployment"):
            name = deployment["metadata"]["name"]
            exporter = await start_pod(sim, objects, deployment, tmp_path / name)
            stack.push_async_callback(exporter.stop)
            pods[name] = exporter
            pod_name = f"{name}-7d9f8c6b5-x{len(pods)}"
            static_configs.append(
                {
                    "targets": [exporter.url.removeprefix("http://")],
                    "labels": chart.discovery_labels(deployment, service, pod_name, endpoint["port"]),
                }
            )
        scrape_config = {
            "job_name": f"serviceMonitor/{monitor['metadata']['namespace']}/{monitor['metadata']['name']}/0",
            "metrics_path": endpoint["path"],
            "static_configs": static_configs,
            "relabel_configs": chart.relabel_configs(endpoint),
        }
        prometheus = await prometheus_factory(scrape_configs=[scrape_config], rule_files=[rules_file])
        await prometheus.wait_targets_up(job="dydx-exporter", timeout=60)

        # The target labels of prometheus.yml, and nothing that keeps the replicas of a shard apart.
        up = await prometheus.query('up{job="dydx-exporter"}')
        shards_replicas = {(s["metric"]["shard"], s["metric"]["replica"]) for s in up}
        assert shards_replicas == {("0/2", "a"), ("0/2", "b"), ("1/2", "a"), ("1/2", "b")}, up
        for series in up:
            assert "pod" not in series["metric"], series
            assert series["metric"]["instance"].startswith(monitor["metadata"]["name"]), series

        # With the simulator paused and every exporter drained, the fleet-wide recording rule counts each
        # market's trades once: the max over the pair of the market's shard, not their sum.
        await pause(sim)
        settled_samples = await settled([p.metrics_url for p in pods.values()])
        per_pod = {
            name: trades_by_market_side(samples) for name, samples in zip(pods, settled_samples, strict=True)
        }
        shard_of_pod = {
            d["metadata"]["name"]: chart.pod_labels(d)["dydx-exporter/shard"]
            for d in chart.of_kind(objects, "Deployment")
        }
        best: dict[tuple[str, str], float] = defaultdict(float)
        shards_of_market: dict[str, set[str]] = defaultdict(set)
        for name, counts in per_pod.items():
            for (market, side), value in counts.items():
                best[market, side] = max(best[market, side], value)
                shards_of_market[market].add(shard_of_pod[name])
        assert all(len(shards) == 1 for shards in shards_of_market.values()), shards_of_market
        assert {s for shards in shards_of_market.values() for s in shards} == {"0-of-2", "1-of-2"}
        want: dict[str, float] = defaultdict(float)
        for (market, _), value in best.items():
            want[market] += value
        naive = sum(sum(counts.values()) for counts in per_pod.values())
        assert sum(want.values()) > 0 and naive > sum(want.values())

        async def fleet_matches() -> bool:
            got = {
                s["metric"]["market"]: float(s["value"][1])
                for s in await prometheus.query("market:dydx_trades_total:sum")
            }
            return got == want

        await wait_for(
            fleet_matches,
            timeout=30,
            interval=0.5,
            message="market:dydx_trades_total:sum == max of each pair",
        )


async def test_the_probes_and_the_scrape_as_rendered_pass_tls_and_basic_auth(tmp_path, simulator_factory):
    """An exporter behind the chart's web config Secret (TLS and basic auth): the kubelet's probes as
    rendered (HTTPS, certificate not verified, the configured header) pass, a request without credentials
    gets 401, and Prometheus's scrape with the CA and its own user gets /metrics."""
    sim = await simulator_factory(markets=3)
    ca = CertificateAuthority.create(tmp_path, "test-ca")
    server = ca.issue(tmp_path, "dydx-exporter", server=True, sans=("127.0.0.1",))
    users = {"probe": "probe-secret", "prometheus": "scrape-secret"}
    values = {
        "config": exporter_config(sim),
        "webConfig": {
            "enabled": True,
            "config": {
                "tls_server_config": {"cert_file": "tls.crt", "key_file": "tls.key"},
                "basic_auth_users": {
                    user: bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
                    for user, password in users.items()
                },
            },
            "files": {"tls.crt": server.cert_file.read_text(), "tls.key": server.key_file.read_text()},
        },
        "probes": {"httpHeaders": [{"name": "Authorization", "value": basic("probe", users["probe"])}]},
    }
    objects = chart.render(values)
    (deployment,) = chart.of_kind(objects, "Deployment")
    box = chart.container(deployment)
    exporter = await start_pod(sim, objects, deployment, tmp_path / "pod")
    try:
        port = exporter.url.rsplit(":", 1)[1]
        kubelet = ssl.create_default_context()
        kubelet.check_hostname, kubelet.verify_mode = False, ssl.CERT_NONE
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

            async def probe(name: str) -> int:
                spec = box[name]["httpGet"]
                url = f"{spec['scheme'].lower()}://127.0.0.1:{port}{spec['path']}"
                headers = {h["name"]: h["value"] for h in spec.get("httpHeaders", [])}
                async with session.get(url, headers=headers, ssl=kubelet) as response:
                    return response.status

            assert await probe("livenessProbe") == 200

            async def ready() -> bool:
                return await probe("readinessProbe") == 200

            await wait_for(ready, timeout=30, message="the readiness probe answers 200")
            async with session.get(f"https://127.0.0.1:{port}/healthz", ssl=kubelet) as response:
                assert response.status == 401

            scraper = ssl.create_default_context(cafile=str(ca.cert_file))
            auth = {"Authorization": basic("prometheus", users["prometheus"])}
            async with session.get(
                f"https://127.0.0.1:{port}/metrics", headers=auth, ssl=scraper
            ) as response:
                assert response.status == 200
                assert "dydx_ws_connected" in await response.text()
    finally:
        await exporter.stop()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
