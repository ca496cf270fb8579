"""The scaling-out topology on real engines, started from the shipped files under deploy/victoriametrics/.

What the tests change in the shipped files, and nothing else (deploy/victoriametrics/README.md says the same):
- addresses: the example hosts (`victoriametrics:8428`, `alertmanager:9093`, `exporter-0a:9741`, ...)
  become loopback ports, and listen addresses (`:8428`) become `127.0.0.1:<free port>`;
- paths: data directories go to the test's temporary directory, repository-relative paths (`deploy/...`,
  `prometheus/rules/*.yml`) become absolute, the rendered scrape configs are written next to the data;
- time constants, scaled down to keep the test short: `scrape_interval`/`scrape_timeout`,
  `-dedup.minScrapeInterval`, `-evaluationInterval`, `-search.latencyOffset`, `-remoteWrite.flushInterval`.
A template naming a flag or a host the shipped file does not contain fails, so file and test cannot drift.

`Component` is one of the four engines (victoria-metrics, vmagent, vmalert, Prometheus in agent mode): a
process with a readiness probe that can be stopped and started again on the same port and data.
The launchers' building blocks (`_Process`, the readiness probe and query helpers of `PrometheusServer`)
are those of tests/fixtures/prom.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.prom import PrometheusServer, _Process, _write_yaml
from tests.fixtures.rules import REPO_ROOT, format_duration
from tests.helpers import find_binary

DEPLOY_DIR = REPO_ROOT / "deploy" / "victoriametrics"
#: Values starting with these are paths relative to the repository root (the files say: run from there).
_REPO_PATHS = ("deploy/", "prometheus/")
#: The example exporter targets of the shipped scrape configs, by (shard, replica).
EXAMPLE_EXPORTERS: dict[tuple[str, str], str] = {
    ("0/2", "a"): "exporter-0a:9741",
    ("0/2", "b"): "exporter-0b:9741",
    ("1/2", "a"): "exporter-1a:9741",
    ("1/2", "b"): "exporter-1b:9741",
}
EXAMPLE_VICTORIAMETRICS = "victoriametrics:8428"
EXAMPLE_ALERTMANAGER = "alertmanager:9093"


def read_args(path: Path) -> list[str]:
    """The flags of a shipped `.args` file: one per line; blank lines and `#` comments skipped."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def render_args(path: Path, overrides: Mapping[str, str], hosts: Mapping[str, str]) -> list[str]:
    """The flags of `path` with the values of `overrides` (flag name → value) replaced, every example host of
    `hosts` replaced in every value, and repository-relative paths made absolute."""
    args = read_args(path)
    names = {arg.partition("=")[0] for arg in args}
    text = "\n".join(args)
    missing = sorted(set(overrides) - names) + [host for host in hosts if host not in text]
    if missing:
        raise AssertionError(f"{path.name} has no {missing}: the template no longer matches it")
    rendered = []
    for arg in args:
        name, eq, value = arg.partition("=")
        if name in overrides:
            value = overrides[name]
        for example, real in hosts.items():
            value = value.replace(example, real)
        if value.startswith(_REPO_PATHS):
            value = str(REPO_ROOT / value)
        rendered.append(f"{name}{eq}{value}")
    return rendered


def render_scrape_config(path: Path, hosts: Mapping[str, str], interval: float) -> dict[str, Any]:
    """A shipped scrape configuration with its example hosts replaced and its intervals set to `interval`."""
    text = path.read_text()
    for example, real in hosts.items():
        if example not in text:
            raise AssertionError(f"{path.name} names no {example}: the template no longer matches it")
        text = text.replace(example, real)
    doc: dict[str, Any] = yaml.safe_load(text)
    doc["global"]["scrape_interval"] = doc["global"]["scrape_timeout"] = format_duration(interval)
    return doc


class Component(PrometheusServer):
    """One engine: its process and its Prometheus-compatible HTTP API (queries work against VictoriaMetrics).
    `stop()` then `start()` brings it back on the same port and data directory."""

    def __init__(self, name: str, argv: Sequence[str], port: int, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(_Process(name, argv, workdir / f"{name}.log"), port, workdir)
        self.kind = name

    async def start(self) -> None:
        await self.process.start()
        await self.wait_ready()


@dataclass(frozen=True)
class Timing:
    """The scaled-down time constants (seconds) the rendered configs run with."""

    scrape_interval: float = 1.0
    latency_offset: float = 1.0
    flush_interval: float = 1.0


def _exporters(hosts: Mapping[str, str]) -> dict[str, str]:
    return {example: hosts[example] for example in EXAMPLE_EXPORTERS.values()}


def victoria_metrics(port: int, workdir: Path, timing: Timing) -> Component:
    argv = render_args(
        DEPLOY_DIR / "victoria-metrics.args",
        {
            "-httpListenAddr": f"127.0.0.1:{port}",
            "-storageDataPath": str(workdir / "data"),
            "-dedup.minScrapeInterval": format_duration(timing.scrape_interval),
            "-search.latencyOffset": format_duration(timing.latency_offset),
        },
        {},
    )
    return Component("victoria-metrics", [find_binary("victoria-metrics"), *argv], port, workdir)


def vmagent(port: int, workdir: Path, timing: Timing, hosts: Mapping[str, str]) -> Component:
    config = _write_yaml(
        workdir / "vmagent.yml",
        render_scrape_config(DEPLOY_DIR / "vmagent.yml", _exporters(hosts), timing.scrape_interval),
    )
    argv = render_args(
        DEPLOY_DIR / "vmagent.args",
        {
            "-httpListenAddr": f"127.0.0.1:{port}",
            "-promscrape.config": str(config),
            "-remoteWrite.tmpDataPath": str(workdir / "queue"),
        },
        {EXAMPLE_VICTORIAMETRICS: hosts[EXAMPLE_VICTORIAMETRICS]},
    )
    return Component("vmagent", [find_binary("vmagent"), *argv], port, workdir)


def prometheus_agent(port: int, workdir: Path, timing: Timing, hosts: Mapping[str, str]) -> Component:
    config = _write_yaml(
        workdir / "prometheus-agent.yml",
        render_scrape_config(
            DEPLOY_DIR / "prometheus-agent.yml",
            {**_exporters(hosts), EXAMPLE_VICTORIAMETRICS: hosts[EXAMPLE_VICTORIAMETRICS]},
            timing.scrape_interval,
        ),
    )
    argv = render_args(
        DEPLOY_DIR / "prometheus-agent.args",
        {
            "--config.file": str(config),
            "--storage.agent.path": str(workdir / "wal"),
            "--web.listen-address": f"127.0.0.1:{port}",
        },
        {},
    )
    return Component("prometheus-agent", [find_binary("prometheus"), *argv], port, workdir)


def vmalert(port: int, workdir: Path, timing: Timing, hosts: Mapping[str, str]) -> Component:
    argv = render_args(
        DEPLOY_DIR / "vmalert.args",
        {
            "-httpListenAddr": f"127.0.0.1:{port}",
            "-evaluationInterval": format_duration(timing.scrape_interval),
            "-remoteWrite.flushInterval": format_duration(timing.flush_interval),
        },
        {k: hosts[k] for k in (EXAMPLE_VICTORIAMETRICS, EXAMPLE_ALERTMANAGER)},
    )
    return Component("vmalert", [find_binary("vmalert"), *argv], port, workdir)


@contextlib.asynccontextmanager
async def started(*components: Component) -> AsyncIterator[None]:
    """Start `components` in order; stop every one started, in reverse order, on exit."""
    async with contextlib.AsyncExitStack() as stack:
        for component in components:
            stack.push_async_callback(component.stop)
            await component.start()
        yield
