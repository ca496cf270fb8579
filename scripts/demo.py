"""`make demo` without Docker: the simulator, the exporter, Prometheus, Alertmanager and (when installed)
Grafana, each on loopback, wired together from the repo's own configs. Ctrl-C stops everything.

    python -m scripts.demo [--state-dir DIR] [--prometheus-port 9090] [--scrape-interval 5s] ...

Every port has a flag and a DEMO_* environment variable (e.g. DEMO_PROMETHEUS_PORT). Configs are generated
into the state dir from prometheus.yml, alertmanager/alertmanager.yml and grafana/provisioning: targets and
ports are rewritten, the rules and routes are kept. Each process runs in its own process group with its log
in STATE/logs/; on SIGINT or SIGTERM they are stopped in reverse order (SIGTERM, then SIGKILL after a grace
period; a second Ctrl-C kills at once). STATE/pids.json lists what was started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from scripts.demo_config import (
    REPO,
    RESEND_DELAY,
    DemoConfig,
    Ports,
    alertmanager_config,
    grafana_provisioning,
    muted,
    prometheus_config,
    start_webhook,
)

PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    name: str
    argv: list[str]
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)
    #: Run once the child answers `ready_url`, before the next one starts.
    settle: Callable[[aiohttp.ClientSession], Awaitable[None]] | None = None
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None


class DemoError(RuntimeError):
    """A component is missing or did not start; the message says which and what to do."""


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as probe:
        # As servers do: connections of a previous run lingering in TIME_WAIT do not make a port busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def find_binary(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


# --- process supervision ----------------------------------------------------------------------------------


def _load_prctl() -> Callable[[int, int], int] | None:
    if sys.platform != "linux":
        return None
    try:
        prctl: Callable[[int, int], int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Resolved once in the parent: between fork and exec the child only makes this one libc call.
_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the demo itself dies, even by SIGKILL."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(child: Child, log_dir: Path) -> None:
    child.log_path = log_dir / f"{child.name}.log"
    log_file = child.log_path.open("ab")
    try:
        child.process = subprocess.Popen(
            child.argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **child.env},
            cwd=REPO,
            start_new_session=True,  # its own process group: a terminal's Ctrl-C reaches only the demo
            preexec_fn=_die_with_parent if _PRCTL is not None else None,
        )
    finally:
        log_file.close()


def tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join("    " + line for line in text[-lines:])


async def poll(condition: Callable[[], Awaitable[bool]], timeout: float, failure: str) -> None:
    """Await `condition` every 0.2 s until it holds (HTTP errors count as not yet); DemoError(`failure`)
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            if await condition():
                return
        if time.monotonic() > deadline:
            raise DemoError(f"{failure} within {timeout:.0f}s")
        await asyncio.sleep(0.2)


async def wait_ready(child: Child, session: aiohttp.ClientSession, timeout: float) -> None:
    async def ready() -> bool:
        assert child.process is not None
        if child.process.poll() is not None:
            raise DemoError(
                f"{child.name} exited with status {child.process.returncode} while starting; "
                f"last lines of {child.log_path}:\n{tail(child.log_path)}"
            )
        async with session.get(child.ready_url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
            return resp.status == 200

    await poll(ready, timeout, f"{child.name} not ready at {child.ready_url} (see {child.log_path})")


def signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def stop_child(child: Child, grace: float, force: asyncio.Event) -> None:
    """SIGTERM the child's process group, SIGKILL it after `grace` (or at once when `force` is set)."""
    process = child.process
    if process is None:
        return
    exit_wait = asyncio.create_task(asyncio.to_thread(process.wait))
    if process.poll() is None:
        signal_group(process, signal.SIGTERM)
        force_wait = asyncio.create_task(force.wait())
        await asyncio.wait({exit_wait, force_wait}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        force_wait.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await force_wait
    # Also when the child is gone already: its group may still hold helpers it started.
    signal_group(process, signal.SIGKILL)
    await exit_wait


# --- the demo ---------------------------------------------------------------------------------------------


class Demo:
    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.children: list[Child] = []
        self.urls: dict[str, str] = {}
        self.state_dir = config.state_dir or Path(tempfile.mkdtemp(prefix="dydx-demo-"))
        self._own_state_dir = config.state_dir is None
        self._webhook: web.AppRunner | None = None
        self._prometheus: dict[str, Any] = {}
        self.force_stop = asyncio.Event()

    def url(self, port: int) -> str:
        return f"http://{self.config.host}:{port}"

    def plan(self) -> list[Child]:
        """The processes to start, in order, with readiness probes. Raises DemoError if one is missing."""
        c, p, state = self.config, self.config.ports, self.state_dir
        python = [sys.executable, "-m", "exporter"]
        sim_url = self.url(p.simulator)
        children = [
            Child(
                "simulator",
                [
                    *python,
                    "simulate",
                    "--web.listen-address",
                    f"{c.host}:{p.simulator}",
                    "--chain-rpc.listen-address",
                    f"{c.host}:{p.chain_rpc}",
                    *c.simulator_args,
                ],
                f"{sim_url}/v4/time",
            ),
            Child(
                "exporter",
                [
                    *python,
                    "--web.listen-address",
                    f"{c.host}:{p.exporter}",
                    "--dydx.ws-url",
                    f"ws://{c.host}:{p.simulator}/v4/ws",
                    "--dydx.rest-url",
                    sim_url,
                    "--chain.rpc-url",
                    self.url(p.chain_rpc),
                    "--log.format",
                    "json",
                    *c.exporter_args,
                ],
                f"{self.url(p.exporter)}/healthz",
            ),
        ]
        alertmanager = find_binary("alertmanager", "prometheus-alertmanager")
        prometheus = find_binary("prometheus")
        missing = [
            name for name, path in (("prometheus", prometheus), ("alertmanager", alertmanager)) if not path
        ]
        if missing or prometheus is None or alertmanager is None:
            raise DemoError(
                f"not installed: {', '.join(missing)}. Run `make tools` (Debian, as root: apt-get install "
                "prometheus prometheus-alertmanager) or put the binaries on PATH."
            )
        children.append(
            Child(
                "alertmanager",
                [
                    alertmanager,
                    f"--config.file={state / 'alertmanager.yml'}",
                    f"--storage.path={state / 'alertmanager-data'}",
                    f"--web.listen-address={c.host}:{p.alertmanager}",
                    "--cluster.listen-address=",  # no gossip port: nothing outside loopback, no clashes
                ],
                f"{self.url(p.alertmanager)}/-/ready",
            )
        )
        children.append(
            Child(
                "prometheus",
                [
                    prometheus,
                    f"--config.file={state / 'prometheus.yml'}",
                    f"--storage.tsdb.path={state / 'prometheus-data'}",
                    f"--web.listen-address={c.host}:{p.prometheus}",
                    "--web.enable-lifecycle",
                    f"--rules.alert.resend-delay={RESEND_DELAY}",
                ],
                f"{self.url(p.prometheus)}/-/ready",
                settle=self.unmute,
            )
        )
        grafana = self.grafana_child() if c.grafana != "off" else None
        if grafana is not None:
            children.append(grafana)
        return children

    def grafana_child(self) -> Child | None:
        binary = find_binary("grafana-server", "grafana")
        if binary is None:
            return None
        homepath = next(
            (
                h
                for h in ("/usr/share/grafana", "/usr/local/share/grafana", "/opt/grafana")
                if Path(h).is_dir()
            ),
            str(Path(binary).resolve().parents[1]),
        )
        argv = [binary, "server"] if Path(binary).name == "grafana" else [binary]
        state, p = self.state_dir / "grafana", self.config.ports
        return Child(
            "grafana",
            [*argv, "--homepath", homepath],
            f"{self.url(p.grafana)}/api/health",
            env={
                "GF_PATHS_DATA": str(state / "data"),
                "GF_PATHS_LOGS": str(state / "logs"),
                "GF_PATHS_PLUGINS": str(state / "plugins"),
                "GF_PATHS_PROVISIONING": str(state / "provisioning"),
                "GF_SERVER_HTTP_ADDR": self.config.host,
                "GF_SERVER_HTTP_PORT": str(p.grafana),
                "GF_AUTH_ANONYMOUS_ENABLED": "true",
                "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer",
                "GF_SECURITY_ADMIN_PASSWORD": os.environ.get("GRAFANA_ADMIN_PASSWORD", "admin"),
                "GF_ANALYTICS_REPORTING_ENABLED": "false",
                "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
            },
        )

    def write_configs(self) -> None:
        state = self.state_dir
        (state / "logs").mkdir(parents=True, exist_ok=True)
        self._prometheus = prometheus_config(REPO / "prometheus.yml", self.config)
        self._write_prometheus_config(muted(self._prometheus))
        am = alertmanager_config(REPO / "alertmanager" / "alertmanager.yml", self.config)
        (state / "alertmanager.yml").write_text(yaml.safe_dump(am, sort_keys=False), encoding="utf-8")
        grafana_provisioning(
            REPO / "grafana" / "provisioning", state / "grafana" / "provisioning", self.config
        )

    def _write_prometheus_config(self, doc: Mapping[str, Any]) -> None:
        text = yaml.safe_dump(dict(doc), sort_keys=False)
        (self.state_dir / "prometheus.yml").write_text(text, encoding="utf-8")

    async def unmute(self, session: aiohttp.ClientSession) -> None:
        """Once Prometheus knows Alertmanager, let its alerts through (see `muted`)."""
        base = self.url(self.config.ports.prometheus)
        alertmanager = f"{self.config.host}:{self.config.ports.alertmanager}"

        async def knows_alertmanager() -> bool:
            async with session.get(f"{base}/api/v1/alertmanagers") as resp:
                body = await resp.json()
            active = body.get("data", {}).get("activeAlertmanagers", [])
            return any(alertmanager in str(am.get("url", "")) for am in active)

        await poll(knows_alertmanager, self.config.start_timeout, "Prometheus never listed Alertmanager")
        self._write_prometheus_config(self._prometheus)
        async with session.post(f"{base}/-/reload") as resp:
            if resp.status != 200:
                raise DemoError(f"Prometheus refused to reload its config: {resp.status} {await resp.text()}")
        # A reload forgets the Alertmanagers until the next discovery round (Prometheus 2.42): wait for it,
        # well inside the resend delay.
        await poll(knows_alertmanager, self.config.start_timeout, "Prometheus lost Alertmanager on reload")

    def check_ports(self, children: Sequence[Child]) -> None:
        """Fail before starting anything: a readiness probe would otherwise be answered by the squatter."""
        names = ["webhook", "chain_rpc", *(child.name for child in children)]
        busy = [
            f"{name} port {port} (--{name.replace('_', '-')}-port, DEMO_{name.upper()}_PORT)"
            for name in names
            if port_in_use(self.config.host, port := getattr(self.config.ports, name))
        ]
        if busy:
            raise DemoError(
                f"already in use on {self.config.host}: {'; '.join(busy)}. Free them or pick other ports."
            )

    async def start(self) -> None:
        children = self.plan()
        self.check_ports(children)
        self.write_configs()
        self._webhook = await start_webhook(self.config.host, self.config.ports.webhook)
        async with aiohttp.ClientSession() as session:
            for child in children:
                spawn(child, self.state_dir / "logs")
                self.children.append(child)
                self.write_pids()
                await wait_ready(child, session, self.config.start_timeout)
                if child.settle is not None:
                    await child.settle(session)
        p = self.config.ports
        self.urls = {
            "simulator": f"{self.url(p.simulator)}  (WebSocket ws://{self.config.host}:{p.simulator}/v4/ws, "
            f"ground truth /metrics, control API /control/; the chain's RPC {self.url(p.chain_rpc)})",
            "exporter": f"{self.url(p.exporter)}/metrics",
            "prometheus": self.url(p.prometheus),
            "alertmanager": self.url(p.alertmanager),
            "alert webhook": f"{self.url(p.webhook)}  (received alerts are printed here)",
        }
        if any(child.name == "grafana" for child in self.children):
            self.urls["grafana"] = f"{self.url(p.grafana)}  (dashboards in the dYdX folder; admin/admin)"
        self.write_pids()

    def write_pids(self) -> None:
        pids = {c.name: c.process.pid for c in self.children if c.process is not None}
        (self.state_dir / "pids.json").write_text(json.dumps(pids), encoding="utf-8")

    def exited(self) -> Child | None:
        return next(
            (c for c in self.children if c.process is not None and c.process.poll() is not None), None
        )

    async def stop(self) -> None:
        for child in reversed(self.children):
            await stop_child(child, self.config.stop_grace, self.force_stop)
        if self._webhook is not None:
            await self._webhook.cleanup()
            self._webhook = None
        if self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def print_banner(demo: Demo) -> None:
    width = max(len(name) for name in demo.urls)
    print("\ndydx-exporter demo is up:", flush=True)
    for name, url in demo.urls.items():
        print(f"  {name:<{width}}  {url}", flush=True)
    if not any(c.name == "grafana" for c in demo.children):
        print(
            "  (Grafana is not installed: for the dashboards use `docker compose --profile simulator up`, "
            "or install Grafana from grafana.com's APT repository and run the demo again)",
            flush=True,
        )
    sim = demo.url(demo.config.ports.simulator)
    print(
        "\nFire drill (DydxMessageGaps is printed here in about a minute and stays firing for 15 minutes; "
        "the README's Quick start lists the others and how long each lasts):\n"
        f'  curl -X POST {sim}/control/faults -d \'{{"kind": "gap", "count": 3}}\'\n'
        f"State and logs: {demo.state_dir}\nCtrl-C stops everything.\n",
        flush=True,
    )


async def run(config: DemoConfig) -> int:
    demo = Demo(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        signals.append(sig.name)
        if stop.is_set():
            demo.force_stop.set()  # second Ctrl-C: no more grace
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    status = 0
    try:
        starting = asyncio.create_task(demo.start())
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting in done:
            stopping.cancel()
            starting.result()  # raises DemoError if a component did not start
            print_banner(demo)
            while not stop.is_set():
                crashed = demo.exited()
                if crashed is not None:
                    assert crashed.process is not None
                    print(
                        f"demo: {crashed.name} exited with status {crashed.process.returncode}; stopping. "
                        f"Last lines of {crashed.log_path}:\n{tail(crashed.log_path)}",
                        file=sys.stderr,
                        flush=True,
                    )
                    status = 1
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, DemoError):
                await starting
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        if signals:
            print(f"demo: {signals[0]} received, stopping", file=sys.stderr, flush=True)
        await demo.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print("demo: stopped, nothing left running", file=sys.stderr, flush=True)
    return status


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> DemoConfig:
    defaults = Ports()
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__.split("\n\n")[0])

    def env(name: str, default: object) -> str:
        return environ.get(f"DEMO_{name.upper().replace('-', '_')}", str(default))

    for name in ("simulator", "exporter", "prometheus", "alertmanager", "grafana", "webhook", "chain_rpc"):
        parser.add_argument(
            f"--{name.replace('_', '-')}-port",
            type=int,
            default=int(env(f"{name}_port", getattr(defaults, name))),
            help=f"(env DEMO_{name.upper()}_PORT, default {getattr(defaults, name)})",
        )
    parser.add_argument("--host", default=env("host", "127.0.0.1"), help="address every component binds to")
    parser.add_argument("--state-dir", default=env("state_dir", ""), help="default: a temporary directory")
    parser.add_argument(
        "--scrape-interval", default=env("scrape_interval", ""), help="default: prometheus.yml's"
    )
    parser.add_argument("--grafana", choices=("auto", "off"), default=env("grafana", "auto"))
    parser.add_argument(
        "--simulator-args", default=env("simulator_args", ""), help="extra flags, shell-quoted"
    )
    parser.add_argument("--exporter-args", default=env("exporter_args", ""), help="extra flags, shell-quoted")
    parser.add_argument("--start-timeout", type=float, default=float(env("start_timeout", 60)))
    parser.add_argument(
        "--rules",
        default=env("rules", ""),
        metavar="DIR",
        help="load DIR/*.yml as the rule files instead of prometheus.yml's (e.g. a time-scaled copy)",
    )
    args = parser.parse_args(list(argv))
    ports = Ports(
        simulator=args.simulator_port,
        exporter=args.exporter_port,
        prometheus=args.prometheus_port,
        alertmanager=args.alertmanager_port,
        grafana=args.grafana_port,
        webhook=args.webhook_port,
        chain_rpc=args.chain_rpc_port,
    )
    return DemoConfig(
        ports=ports,
        host=args.host,
        state_dir=Path(args.state_dir).resolve() if args.state_dir else None,
        scrape_interval=args.scrape_interval or None,
        grafana=args.grafana,
        simulator_args=tuple(shlex.split(args.simulator_args)),
        exporter_args=tuple(shlex.split(args.exporter_args)),
        start_timeout=args.start_timeout,
        rule_files=tuple(sorted(Path(args.rules).resolve().glob("*.yml"))) if args.rules else (),
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    if config.state_dir is not None:
        config.state_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(run(config))


if __name__ == "__main__":
    sys.exit(main())
