"""permessage-deflate, measured: `python -m bench.compression` (the figures of BENCHMARKS.md, "Compression").

For each mode (unbatched, batched) it runs the simulator (`dydx-exporter simulate`, 267 markets at
`--rate 2`, about 1,000 updates/s: the mainnet-like rate BENCHMARKS.md assumes) compressing 0 % and then
100 % of the connections that offer permessage-deflate, and one exporter through the real CLI with
`--feed.compression`. Once every market is subscribed and a warm-up has passed, it reads over `--seconds`:
the exporter's CPU (`process_cpu_seconds_total`, scrapes included) per update counted, the bytes the
simulator's sockets delivered to it (`bytes_acked` of `ss -ti`, iproute2: the compressed bytes on the wire,
WebSocket framing and the few of REST included) and the WebSocket payload bytes it decoded
(`dydx_ws_received_bytes_total`), and the simulator's CPU; and the bytes on the wire from the first
connect until every market was subscribed (the snapshots, what a reconnect of every link costs again).

CPU figures depend on the machine and how loaded it is: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import aiohttp

from bench.report import machine, table
from scripts.capacity import MAINNET_MARKETS, _get, _process_cpu_seconds
from tests.fixtures.exporter import start_exporter_process
from tests.fixtures.simulator import simulator_ws_url, start_simulator_process
from tests.helpers import LoggedProcess, metric_sum, wait_for


@dataclass(frozen=True)
class Run:
    mode: str  # unbatched or batched
    percent: int  # of offering connections the simulator compresses
    compressed_links: int
    links: int
    updates_per_s: float
    cpu_us_per_update: float  # exporter CPU per update, scrapes included
    snapshot_kib: float  # on the wire from the first connect until every market is subscribed
    wire_bytes_per_update: float  # on the wire
    payload_bytes_per_update: float  # WebSocket payload, decompressed
    simulator_cores: float


def _bytes_sent(port: int) -> int:
    """Bytes acknowledged on the established TCP connections served from `port` (`ss -ti`)."""
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(int(n) for n in re.findall(r"bytes_acked:(\d+)", out))


async def measure(mode: str, percent: int, seconds: float, warmup: float, log: Callable[[str], None]) -> Run:
    sim = await start_simulator_process(
        f"--markets={MAINNET_MARKETS}", "--rate=2", "--seed=1", f"--ws.compression-percent={percent}"
    )
    exporter: LoggedProcess | None = None
    try:
        ws_url = await simulator_ws_url(sim)
        base_url = ws_url.replace("ws://", "http://")[: -len("/v4/ws")]
        port = int(base_url.rsplit(":", 1)[1])
        target = SimpleNamespace(ws_url=ws_url, base_url=base_url)
        flags = ["--feed.compression", *(["--feed.batched"] if mode == "batched" else [])]
        exporter = await start_exporter_process(target, *flags)
        url = str((await exporter.wait_event("exporter_started"))["url"]) + "/metrics"
        async with aiohttp.ClientSession() as session:

            async def subscribed() -> bool:
                samples, _ = await _get(session, url)
                active = metric_sum(samples, "dydx_subscriptions", channel="v4_orderbook", state="active")
                return active == MAINNET_MARKETS

            await wait_for(subscribed, timeout=180, interval=1.0, message="every market subscribed")
            snapshots = _bytes_sent(port) / 1024
            await asyncio.sleep(warmup)
            async with session.get(base_url + "/control/status") as resp:
                status = await resp.json()
            samples, _ = await _get(session, url)
            began = time.monotonic()
            cpu0, sim0, wire0 = (
                metric_sum(samples, "process_cpu_seconds_total"),
                _process_cpu_seconds(sim),
                _bytes_sent(port),
            )
            updates0 = metric_sum(samples, "dydx_updates_total")
            payload0 = metric_sum(samples, "dydx_ws_received_bytes_total")
            await asyncio.sleep(seconds)
            samples, _ = await _get(session, url)
            elapsed = time.monotonic() - began
            wire = _bytes_sent(port) - wire0
            sim_cpu = (_process_cpu_seconds(sim) - sim0) / elapsed
        updates = metric_sum(samples, "dydx_updates_total") - updates0
        run = Run(
            mode=mode,
            percent=percent,
            compressed_links=int(status["compressed_connections"]),
            links=int(status["connections"]),
            updates_per_s=updates / elapsed,
            cpu_us_per_update=(metric_sum(samples, "process_cpu_seconds_total") - cpu0) / updates * 1e6,
            snapshot_kib=snapshots,
            wire_bytes_per_update=wire / updates,
            payload_bytes_per_update=(metric_sum(samples, "dydx_ws_received_bytes_total") - payload0)
            / updates,
            simulator_cores=sim_cpu,
        )
        log(f"  {run}")
        return run
    finally:
        if exporter is not None:
            await exporter.stop()
        await sim.stop()


def render(runs: Sequence[Run], env: dict[str, object]) -> str:
    rows = [
        [
            r.mode,
            f"{r.percent} %",
            f"{r.compressed_links}/{r.links}",
            f"{r.updates_per_s:,.0f}",
            f"{r.cpu_us_per_update:.1f}",
            f"{r.snapshot_kib:,.0f}",
            f"{r.wire_bytes_per_update:.0f}",
            f"{r.payload_bytes_per_update:.0f}",
            f"{r.simulator_cores * 100:.0f}%",
        ]
        for r in runs
    ]
    head = ["mode", "compressed", "links", "updates/s", "exporter µs CPU/update", "subscribe KiB",
            "wire B/update",
            "payload B/update", "simulator CPU"]  # fmt: skip
    return (
        table(head, rows)
        + f"\n\nload average {env.get('loadavg')} at the start, {env.get('loadavg_end')} at the end; {env}\n"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compression", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window per run (30)")
    parser.add_argument("--warmup", type=float, default=10.0, help="after every market is subscribed (10)")
    parser.add_argument("--modes", default="unbatched,batched")
    return parser.parse_args(argv)


async def amain(args: argparse.Namespace) -> int:
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {line}", file=sys.stderr, flush=True)

    env = machine()
    runs = []
    for mode in args.modes.split(","):
        for percent in (0, 100):
            log(f"{mode}, {percent} % compressed")
            runs.append(await measure(mode, percent, args.seconds, args.warmup, log))
    env["loadavg_end"] = os.getloadavg()
    print(render(runs, env))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
