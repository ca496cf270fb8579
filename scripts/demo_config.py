"""What `make demo` (scripts/demo.py) runs with: its ports and options, the configs it generates from the
repo's own prometheus.yml, alertmanager/alertmanager.yml and grafana/provisioning (targets and ports
rewritten, rules and routes kept), and the webhook receiver that prints what Alertmanager sends."""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]

#: Where the repo's configs expect each component (loopback for `make demo`, service names for compose).
DEFAULT_ADDRESSES = {
    "simulator": ("127.0.0.1:3003", "simulator:3003"),
    "exporter": ("127.0.0.1:9741", "exporter:9741"),
    "prometheus": ("127.0.0.1:9090", "prometheus:9090"),
    "alertmanager": ("127.0.0.1:9093", "alertmanager:9093"),
    "webhook": ("127.0.0.1:5001", "webhook:5001"),
}


@dataclass(frozen=True, slots=True)
class Ports:
    simulator: int = 3003
    exporter: int = 9741
    prometheus: int = 9090
    alertmanager: int = 9093
    grafana: int = 3000
    webhook: int = 5001
    #: The simulator's CometBFT RPC (the chain's head, for the "Who is at fault" panels); 26657 as a node's.
    chain_rpc: int = 26657


@dataclass(frozen=True, slots=True)
class DemoConfig:
    ports: Ports = field(default_factory=Ports)
    host: str = "127.0.0.1"
    state_dir: Path | None = None  # None: a fresh temporary directory, removed at exit
    scrape_interval: str | None = None  # None: keep prometheus.yml's
    grafana: str = "auto"  # auto (if installed), off
    simulator_args: tuple[str, ...] = ()
    exporter_args: tuple[str, ...] = ()
    #: Rule files to load instead of prometheus.yml's (the drill test loads a time-scaled copy).
    rule_files: tuple[Path, ...] = ()
    start_timeout: float = 60.0
    stop_grace: float = 10.0


# --- config generation ------------------------------------------------------------------------------------


#: Prometheus re-sends a firing alert this often; the first Watchdog notification goes out one resend after
#: the first evaluation (see `muted`): late enough that Prometheus knows Alertmanager again after the
#: reload that unmutes it (one 5 s discovery round), soon enough to show the path works.
RESEND_DELAY = "30s"


def muted(prometheus: Mapping[str, Any]) -> dict[str, Any]:
    """`prometheus` config with every alert relabelled away, for Prometheus' first seconds.

    Prometheus learns of its Alertmanagers only at its first discovery round, up to 5 s after it starts,
    and 2.42 (Debian's) drops whatever it sends before, counting it in prometheus_notifications_dropped_total:
    the Watchdog fires at the first evaluation and was lost that way. While muted, alerts are evaluated and
    marked as sent but never queued, so nothing is dropped; once Alertmanager is known the demo reloads
    the real config, and the Watchdog goes out at its next resend (RESEND_DELAY)."""
    doc = copy.deepcopy(dict(prometheus))
    alerting = doc.setdefault("alerting", {})
    alerting["alert_relabel_configs"] = [
        *alerting.get("alert_relabel_configs", []),
        {"source_labels": ["alertname"], "regex": ".*", "action": "drop"},
    ]
    return doc


def rewrite_strings(node: Any, rewrite: Callable[[str], str]) -> Any:
    """`node` with every string value (not key) passed through `rewrite`."""
    if isinstance(node, dict):
        return {key: rewrite_strings(value, rewrite) for key, value in node.items()}
    if isinstance(node, list):
        return [rewrite_strings(value, rewrite) for value in node]
    if isinstance(node, str):
        return rewrite(node)
    return node


def address_rewriter(replacements: Mapping[str, str]) -> Callable[[str], str]:
    def rewrite(value: str) -> str:
        for old, new in replacements.items():
            value = value.replace(old, new)
        return value

    return rewrite


def address_map(config: DemoConfig) -> dict[str, str]:
    ports = {
        "simulator": config.ports.simulator,
        "exporter": config.ports.exporter,
        "prometheus": config.ports.prometheus,
        "alertmanager": config.ports.alertmanager,
        "webhook": config.ports.webhook,
    }
    return {old: f"{config.host}:{ports[name]}" for name, olds in DEFAULT_ADDRESSES.items() for old in olds}


def prometheus_config(source: Path, config: DemoConfig) -> dict[str, Any]:
    """prometheus.yml with the demo's targets, rule_files made absolute (the rules themselves untouched)."""
    doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    rules = [str((source.parent / pattern).resolve()) for pattern in doc.get("rule_files") or []]
    if config.rule_files:
        rules = [str(path.resolve()) for path in config.rule_files]
    doc = rewrite_strings(doc, address_rewriter(address_map(config)))
    doc["rule_files"] = rules
    if config.scrape_interval:
        doc.setdefault("global", {})
        doc["global"]["scrape_interval"] = config.scrape_interval
        doc["global"]["evaluation_interval"] = config.scrape_interval
        doc["global"]["scrape_timeout"] = config.scrape_interval
        for job in doc.get("scrape_configs", []):
            job.pop("scrape_interval", None)
            job.pop("scrape_timeout", None)
    assert isinstance(doc, dict)
    return doc


def alertmanager_config(source: Path, config: DemoConfig) -> dict[str, Any]:
    doc = rewrite_strings(
        yaml.safe_load(source.read_text(encoding="utf-8")), address_rewriter(address_map(config))
    )
    assert isinstance(doc, dict)
    return doc


def grafana_provisioning(source: Path, target: Path, config: DemoConfig) -> None:
    """Copy grafana/provisioning with the datasource pointed at the demo Prometheus and the dashboards
    provider at the repo's grafana/dashboards."""
    replacements = address_map(config)
    replacements["/var/lib/grafana/dashboards"] = str(REPO / "grafana" / "dashboards")
    rewrite = address_rewriter(replacements)
    for path in sorted(source.rglob("*")):
        destination = target / path.relative_to(source)
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        elif path.suffix in (".yml", ".yaml"):
            destination.parent.mkdir(parents=True, exist_ok=True)
            doc = rewrite_strings(yaml.safe_load(path.read_text(encoding="utf-8")), rewrite)
            destination.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    for kind in ("dashboards", "datasources", "plugins", "alerting", "notifiers"):
        (target / kind).mkdir(parents=True, exist_ok=True)


# --- the demo's own webhook receiver (Alertmanager's receivers point here) --------------------------------


def describe_notification(receiver: str, alert: Mapping[str, Any], color: bool = False) -> str:
    """How the demo prints one alert of a notification: the Watchdog as a quiet line (it only says the
    path works), every other alert as a block that stands out, with its summary and runbook."""
    labels = alert.get("labels", {})
    annotations = alert.get("annotations", {})
    name = labels.get("alertname", "?")
    status = str(alert.get("status", "?")).upper()
    if name == "Watchdog":
        return (
            "[alertmanager → watchdog] Watchdog delivered: the alerting path works "
            "(Alertmanager repeats it hourly, for a heartbeat monitor)"
        )
    where = ", ".join(f"{k}={labels[k]}" for k in ("instance", "market", "channel") if k in labels)
    rule = "=" * 100
    lines = [
        rule,
        f"  {status}  {name}  (severity {labels.get('severity', '-')}, receiver {receiver or 'default'})",
        f"  {annotations.get('summary', '')}" + (f"  [{where}]" if where else ""),
    ]
    if annotations.get("runbook_url"):
        lines.append(f"  runbook: {annotations['runbook_url']}")
    lines.append(rule)
    text = "\n".join(lines)
    if color:
        text = ("\033[1;31m" if status == "FIRING" else "\033[1;32m") + text + "\033[0m"
    return text


async def start_webhook(host: str, port: int) -> web.AppRunner:
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ

    async def receive(request: web.Request) -> web.Response:
        try:
            payload = await request.json()
        except ValueError:
            return web.Response(status=400, text="expected JSON\n")
        receiver = request.match_info.get("receiver", "")
        for alert in payload.get("alerts", []):
            print(describe_notification(receiver, alert, color), flush=True)
        return web.Response(text="ok\n")

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/", receive)
    app.router.add_post("/{receiver}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    return runner
