"""`make demo` (python -m scripts.demo): its generated configs, and the whole stack up and torn down."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from scripts.demo import Demo
from scripts.demo_config import (
    DemoConfig,
    Ports,
    alertmanager_config,
    describe_notification,
    grafana_provisioning,
    muted,
    prometheus_config,
)
from tests.fixtures.rules import write_scaled_rules
from tests.helpers import find_binary, free_ports, wait_for

REPO = Path(__file__).resolve().parents[2]
CHILDREN = ("simulator", "exporter", "alertmanager", "prometheus")
PORT_NAMES = tuple(field.name for field in dataclasses.fields(Ports))


def demo_config(ports: list[int]) -> DemoConfig:
    return DemoConfig(ports=Ports(**dict(zip(PORT_NAMES, ports, strict=True))), scrape_interval="1s")


def test_generated_prometheus_config_is_valid_and_points_at_the_demo(tmp_path):
    config = demo_config(free_ports(len(PORT_NAMES)))
    doc = prometheus_config(REPO / "prometheus.yml", config)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    check = subprocess.run(
        [find_binary("promtool"), "check", "config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    targets = {
        t for job in doc["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]
    }
    p = config.ports
    assert {f"127.0.0.1:{p.exporter}", f"127.0.0.1:{p.simulator}", f"127.0.0.1:{p.prometheus}"} <= targets
    alertmanagers = doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == [f"127.0.0.1:{p.alertmanager}"]
    # The rules are the repo's own files, untouched, referenced by absolute path.
    assert all(Path(pattern).is_absolute() for pattern in doc["rule_files"])
    assert doc["global"]["scrape_interval"] == "1s"


def test_generated_alertmanager_config_is_valid_and_notifies_the_demo_webhook(tmp_path):
    config = demo_config(free_ports(len(PORT_NAMES)))
    doc = alertmanager_config(REPO / "alertmanager" / "alertmanager.yml", config)
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    check = subprocess.run(
        [find_binary("amtool"), "check-config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    urls = [w["url"] for r in doc["receivers"] for w in r.get("webhook_configs", [])]
    assert urls and all(u.startswith(f"http://127.0.0.1:{config.ports.webhook}/") for u in urls)
    original = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
    assert doc["route"] == original["route"]  # the routing tree is kept as is


def test_generated_grafana_provisioning_uses_the_demo_prometheus_and_repo_dashboards(tmp_path):
    config = demo_config(free_ports(len(PORT_NAMES)))
    grafana_provisioning(REPO / "grafana" / "provisioning", tmp_path, config)
    datasources = [
        ds
        for f in (tmp_path / "datasources").glob("*.y*ml")
        for ds in yaml.safe_load(f.read_text())["datasources"]
    ]
    assert [ds["url"] for ds in datasources] == [f"http://127.0.0.1:{config.ports.prometheus}"]
    assert datasources[0]["uid"] == "dydx-prometheus"
    providers = [
        p
        for f in (tmp_path / "dashboards").glob("*.y*ml")
        for p in yaml.safe_load(f.read_text())["providers"]
    ]
    assert [p["options"]["path"] for p in providers] == [str(REPO / "grafana" / "dashboards")]


def test_the_first_install_gets_no_license_deprecation_warning():
    """`make demo` starts with `pip install -e .`: setuptools >= 77 warns (15 lines, three times) about a
    `project.license` TOML table and rejects the SPDX string below 77, so both must hold together."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in pyproject["build-system"]["requires"]
    assert not any(c.startswith("License ::") for c in pyproject["project"].get("classifiers", []))


def test_the_watchdog_prints_quietly_and_a_real_alert_stands_out():
    watchdog = describe_notification("watchdog", {"status": "firing", "labels": {"alertname": "Watchdog"}})
    assert "\n" not in watchdog and "Watchdog delivered" in watchdog
    alert = {
        "status": "firing",
        "labels": {"alertname": "DydxFeedStale", "severity": "warning", "channel": "v4_trades"},
        "annotations": {"summary": "stale", "runbook_url": "https://x/runbooks.md#dydxfeedstale"},
    }
    block = describe_notification("warning", alert).splitlines()
    assert block[0] == block[-1] and set(block[0]) == {"="}
    assert "  FIRING  DydxFeedStale  (severity warning, receiver warning)" in block
    assert any("channel=v4_trades" in line for line in block)
    assert "  runbook: https://x/runbooks.md#dydxfeedstale" in block


def test_prometheus_starts_with_its_alerts_relabelled_away_and_the_rules_loaded():
    """The muted config Prometheus starts with keeps everything but lets no alert out (see scripts/demo.py:
    what Prometheus sends before it discovers Alertmanager is dropped)."""
    doc = prometheus_config(REPO / "prometheus.yml", demo_config(free_ports(len(PORT_NAMES))))
    quiet = muted(doc)
    assert quiet["rule_files"] == doc["rule_files"] and quiet["scrape_configs"] == doc["scrape_configs"]
    assert quiet["alerting"]["alert_relabel_configs"][-1] == {
        "source_labels": ["alertname"],
        "regex": ".*",
        "action": "drop",
    }
    assert "alert_relabel_configs" not in doc["alerting"]


def test_missing_prometheus_is_reported_with_what_to_do(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "scripts.demo", "--state-dir", str(tmp_path), "--grafana", "off"],
        cwd=REPO,
        env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "not installed: prometheus, alertmanager" in result.stderr
    assert "make tools" in result.stderr


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def processes_in_groups(groups: set[int]) -> list[int]:
    """Live pids whose process group is one of `groups` (every demo child leads its own group)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        state, pgid = fields[0], int(fields[3])
        if pgid in groups and state != "Z":
            found.append(int(entry.name))
    return found


async def prometheus_query(session: aiohttp.ClientSession, base: str, query: str) -> list[dict[str, Any]]:
    async with session.get(f"{base}/api/v1/query", params={"query": query}) as resp:
        body = await resp.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@dataclass
class RunningDemo:
    process: asyncio.subprocess.Process
    config: DemoConfig
    output: Path
    pids: dict[str, int]

    def text(self) -> str:
        return self.output.read_text()

    def assert_nothing_left(self) -> None:
        survivors = [name for name, pid in self.pids.items() if alive(pid)]
        assert not survivors, f"still running: {survivors}\n{self.text()}"
        assert not processes_in_groups({self.process.pid, *self.pids.values()})


@asynccontextmanager
async def running_demo(
    tmp_path: Path, *, via_make: bool = False, extra_args: tuple[str, ...] = ()
) -> AsyncIterator[RunningDemo]:
    """The demo on free loopback ports, up and printing its URLs; killed at exit if needed.

    `via_make` runs the README's `make demo`, configured by its DEMO_* environment variables; `-o` keeps make
    from reinstalling the venv when pyproject.toml is newer than its stamp (as while developing)."""
    await asyncio.to_thread(tmp_path.mkdir, parents=True, exist_ok=True)
    config = demo_config(free_ports(len(PORT_NAMES)))
    state = tmp_path / "state"
    output = tmp_path / "demo.out"
    names = PORT_NAMES
    env = dict(os.environ)
    if via_make:
        argv = ["make", "--no-print-directory", "-o", ".venv/.installed", "demo"]
        env |= {f"DEMO_{name.upper()}_PORT": str(getattr(config.ports, name)) for name in names}
        env |= {"DEMO_STATE_DIR": str(state), "DEMO_SCRAPE_INTERVAL": "1s", "DEMO_GRAFANA": "off"}
    else:
        argv = [sys.executable, "-m", "scripts.demo", "--state-dir", str(state), "--scrape-interval", "1s"]
        for name in names:
            argv += [f"--{name.replace('_', '-')}-port", str(getattr(config.ports, name))]
        argv += ["--grafana", "off", *extra_args]
    with output.open("wb") as out:
        # Its own session, like a shell job: a SIGINT to the group is what Ctrl-C in a terminal sends.
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    demo = RunningDemo(process, config, output, {})
    try:

        def up_and_recorded() -> bool:
            if process.returncode is not None:
                raise AssertionError(f"demo exited early ({process.returncode}):\n{demo.text()}")
            pids_file = state / "pids.json"
            if pids_file.exists():
                demo.pids.update(json.loads(pids_file.read_text() or "{}"))
            return "demo is up" in demo.text() and set(CHILDREN) <= set(demo.pids)

        await wait_for(up_and_recorded, timeout=90, interval=0.2, message="demo prints its URLs")
        yield demo
    finally:
        for pid in (process.pid, *demo.pids.values()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if process.returncode is None:
            await asyncio.wait_for(process.wait(), 10)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_make_demo_brings_the_stack_up_and_ctrl_c_leaves_nothing_behind(tmp_path):
    async with running_demo(tmp_path, via_make=True) as demo:
        ports = demo.config.ports
        prometheus = f"http://127.0.0.1:{ports.prometheus}"
        for url in (
            prometheus,
            f"http://127.0.0.1:{ports.exporter}/metrics",
            f"http://127.0.0.1:{ports.simulator}",
        ):
            assert url in demo.text()

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

            async def exporter_up_with_data():
                up = await prometheus_query(session, prometheus, 'up{job="dydx-exporter"} == 1')
                flowing = await prometheus_query(
                    session, prometheus, "sum(rate(dydx_ws_messages_total[5s])) > 0"
                )
                return bool(up and flowing)

            await wait_for(
                exporter_up_with_data, timeout=60, interval=0.5, message="exporter up, data flowing"
            )
            async with session.get(f"{prometheus}/api/v1/alertmanagers") as resp:
                active = (await resp.json())["data"]["activeAlertmanagers"]
            assert [a["url"] for a in active] == [f"http://127.0.0.1:{ports.alertmanager}/api/v2/alerts"]
            async with session.get(f"{prometheus}/api/v1/rules") as resp:
                groups = (await resp.json())["data"]["groups"]
            assert groups, "the repo's rules are loaded"

        os.killpg(demo.process.pid, signal.SIGINT)  # Ctrl-C: make and the demo both get it
        started = time.monotonic()
        await asyncio.wait_for(demo.process.wait(), 40)
        assert time.monotonic() - started < 30
        demo.assert_nothing_left()
        assert "nothing left running" in demo.text()


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_crashed_component_stops_the_demo_and_a_killed_demo_takes_its_children_along(tmp_path):
    async with running_demo(tmp_path / "crash") as demo:
        os.kill(demo.pids["exporter"], signal.SIGKILL)
        await asyncio.wait_for(demo.process.wait(), 40)
        assert demo.process.returncode == 1
        assert "exporter exited" in demo.text()
        demo.assert_nothing_left()

    async with running_demo(tmp_path / "kill") as demo:
        os.kill(demo.process.pid, signal.SIGKILL)  # no handler runs: the children's death signal must act
        await asyncio.wait_for(demo.process.wait(), 10)

        def all_gone() -> bool:
            return not any(alive(pid) for pid in demo.pids.values())

        await wait_for(all_gone, timeout=20, message="children exit after the demo is killed")
        demo.assert_nothing_left()


async def test_a_busy_port_is_named_before_anything_starts(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "scripts.demo",
            "--state-dir",
            str(tmp_path),
            "--grafana",
            "off",
            "--alertmanager-port",
            str(port),
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(result.communicate(), 30)
    assert result.returncode == 1
    assert f"alertmanager port {port} (--alertmanager-port, DEMO_ALERTMANAGER_PORT)" in output.decode()
    assert not (tmp_path / "pids.json").exists() or json.loads((tmp_path / "pids.json").read_text()) == {}


def test_grafana_is_started_from_the_installed_binary_with_generated_provisioning(tmp_path, monkeypatch):
    """Grafana is optional and absent here: the plan for it is checked, not a running server."""
    binary = tmp_path / "bin" / "grafana"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", f"{binary.parent}{os.pathsep}{os.environ['PATH']}")
    config = dataclasses.replace(demo_config(free_ports(len(PORT_NAMES))), state_dir=tmp_path / "state")
    demo = Demo(config)
    child = demo.grafana_child()
    assert child is not None
    assert child.argv[:2] == [str(binary), "server"] and "--homepath" in child.argv
    assert child.ready_url == f"http://127.0.0.1:{config.ports.grafana}/api/health"
    assert child.env["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    assert child.env["GF_SERVER_HTTP_PORT"] == str(config.ports.grafana)
    assert child.env["GF_PATHS_PROVISIONING"] == str(tmp_path / "state" / "grafana" / "provisioning")
    assert Demo(dataclasses.replace(config, grafana="off")).plan()[-1].name == "prometheus"


# --- the README's fire drills, as written, against the demo --------------------------------------------

README = REPO / "README.md"
#: Rule durations scaled as in tests/alerts/test_alerts_e2e.py (`for: 1m` → 6 s, `[10m]` → 60 s), ranges
#: never below 4 scrapes of the test's 1 s interval; the exporter's own timers (30 s crossed resync, 10 s
#: message-id grace) scaled alike. Alertmanager keeps the repo's timers (30 s group_wait for warnings), so
#: no alert may be scaled shorter than that: at 1/30, DydxMessageGaps (15 m → 30 s) could resolve before
#: its group was first flushed, and never be printed.
DRILL_FACTOR = 1 / 10
DRILL_MIN_RANGE = 4.0
DRILL_EXPORTER_ARGS = "--orderbook.crossed-resync-after 3s --data.message-id-grace 1s"
#: Longer than the Watchdog's old repeat (1 m) and group interval: a second Watchdog would show here.
WATCHDOG_WINDOW = 75.0


@dataclass(frozen=True)
class Drill:
    method: str
    url: str
    body: str | None
    alert: str | None  # the alert the README's comment names

    @classmethod
    def parse(cls, line: str) -> Drill:
        command, _, comment = line.partition("#")
        args = shlex.split(command)
        assert args[0] == "curl", line
        method = args[args.index("-X") + 1] if "-X" in args else "GET"
        body = args[args.index("-d") + 1] if "-d" in args else None
        url = next(a for a in args[1:] if a.startswith("http"))
        found = re.search(r"\b(Dydx\w+)", comment)
        return cls(method, url, body, found.group(1) if found else None)


def readme_drills() -> list[Drill]:
    """The curl lines of the Quick start's fire drills, in order."""
    section = README.read_text(encoding="utf-8").split("**Fire drills.**", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    return [Drill.parse(line) for line in block.splitlines() if line.startswith("curl ")]


def test_the_readme_lists_the_three_drills_and_says_how_long_each_alert_lasts():
    drills = readme_drills()
    assert [d.alert for d in drills if d.alert] == [
        "DydxMessageGaps",
        "DydxFeedStale",
        "DydxOrderbookCrossed",
    ]
    assert [(d.method, d.body) for d in drills if not d.alert] == [("GET", None), ("DELETE", None)]
    table = README.read_text(encoding="utf-8").split("| Drill | Printed after | Lasts | Why |", 1)[1]
    rows = [line for line in table.split("\n\n", 1)[0].splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [
        json.loads(d.body or "{}")["kind"] for d in drills if d.alert
    ]


def printed_alerts(text: str, status: str = "FIRING") -> list[str]:
    return re.findall(rf"^  {status}  (\w+)  \(severity", text, re.MULTILINE)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_every_readme_drill_prints_its_alert_and_the_watchdog_arrives_once(tmp_path):
    """The README's drills run as written (URL moved to the test's simulator port) against the demo with
    time-scaled rules; each prints the alert its comment names. Meanwhile no notification is dropped (the
    demo arms the rules only once Prometheus knows Alertmanager) and the Watchdog is printed exactly once."""
    rules = write_scaled_rules(tmp_path / "rules", DRILL_FACTOR, DRILL_MIN_RANGE)
    assert rules
    extra = ("--rules", str(tmp_path / "rules"), "--exporter-args", DRILL_EXPORTER_ARGS)
    drills = readme_drills()
    async with running_demo(tmp_path / "demo", extra_args=extra) as demo:
        ports = demo.config.ports
        prometheus = f"http://127.0.0.1:{ports.prometheus}"
        simulator = f"http://127.0.0.1:{ports.simulator}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

            def watchdogs() -> int:
                return demo.text().count("Watchdog delivered")

            await wait_for(watchdogs, timeout=30, interval=0.2, message="the first Watchdog is printed")
            first_watchdog = time.monotonic()

            async def flowing() -> bool:
                rates = await prometheus_query(session, prometheus, "sum(rate(dydx_trades_total[5s])) > 0")
                return bool(rates)

            await wait_for(flowing, timeout=60, interval=0.5, message="trades flowing")
            # Nothing fires on its own: the drills, not the demo's normal traffic, raise the alerts.
            named = {d.alert for d in drills if d.alert}
            quiet = await prometheus_query(session, prometheus, "ALERTS")
            assert not named & {a["metric"]["alertname"] for a in quiet}, quiet

            for drill in drills:
                url = drill.url.replace("http://127.0.0.1:3003", simulator)
                if drill.method == "DELETE":
                    continue  # the last line clears the faults once every alert has been seen
                async with session.request(drill.method, url, data=drill.body) as resp:
                    body = await resp.text()
                    assert resp.status == 200, (drill, resp.status, body)
                if drill.method == "GET":
                    active = {fault["kind"] for fault in json.loads(body)["faults"]}
                    assert {"stall", "cross"} <= active, body  # a gap is applied at once, not listed

            for alert in sorted(named):

                def printed(name: str = alert) -> bool:
                    return name in printed_alerts(demo.text())

                try:
                    await wait_for(
                        printed, timeout=120, interval=0.5, message=f"the demo prints {alert} FIRING"
                    )
                except AssertionError as exc:
                    seen = await prometheus_query(
                        session, prometheus, 'ALERTS or {__name__=~"dydx_message_id_gaps_total|up"}'
                    )
                    raise AssertionError(f"{exc}\nPrometheus: {seen}\n{demo.text()}") from None

            # The window covers the Watchdog's old 1 m repeat: still exactly one.
            remaining = WATCHDOG_WINDOW - (time.monotonic() - first_watchdog)
            if remaining > 0:
                await asyncio.sleep(remaining)  # a deliberate window, not a wait for a condition
            assert watchdogs() == 1, demo.text()
            dropped = await prometheus_query(
                session, prometheus, "sum(prometheus_notifications_dropped_total)"
            )
            assert [float(r["value"][1]) for r in dropped] == [0.0]

            clear = next(d for d in drills if d.method == "DELETE")
            async with session.delete(clear.url.replace("http://127.0.0.1:3003", simulator)) as resp:
                assert resp.status == 200
            async with session.get(f"{simulator}/control/faults") as resp:
                assert (await resp.json())["faults"] == []

        os.killpg(demo.process.pid, signal.SIGINT)
        await asyncio.wait_for(demo.process.wait(), 40)
        demo.assert_nothing_left()
