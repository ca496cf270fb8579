"""Capacity model of the exporter, measured: `python -m scripts.capacity` (the figures of docs/scaling.md).

For each market count it runs the simulator (`dydx-exporter simulate`, its activity scaled with the market
count, so that each market is as busy as an average market of the 267 at `--rate 2`, about 1,000 updates/s
in all: the mainnet-like rate BENCHMARKS.md assumes) and one exporter through the real CLI. Once every
market is subscribed and a warm-up has passed, it scrapes the exporter every `--scrape-interval` (as
Prometheus would) for `--seconds`, and reads from the exporter's own /metrics: the series exported (with
and without a `market` label), the scrape size, the updates counted, the process CPU
(`process_cpu_seconds_total`) and resident memory. A straight-line fit over the runs gives CPU and memory
per 100 markets; the model then answers for 1,000 markets in 4 shards run as HA pairs.

CPU figures depend on the machine and how loaded it is: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp

from bench.report import machine, table
from exporter.config import shard_of
from tests.fixtures.exporter import start_exporter_process
from tests.fixtures.simulator import simulator_ws_url, start_simulator_process
from tests.helpers import LoggedProcess, Samples, metric_sum, parse_metrics, wait_for

#: The simulator's realistic market set; `--rate 1` spreads its mainnet-like activity over all of them.
MAINNET_MARKETS = 267


@dataclass(frozen=True)
class Run:
    """One exporter measured against one simulator."""

    markets: int  # listed by the simulator
    shard: str
    exported: int  # markets this exporter's shard subscribes
    series: int  # series (samples) per scrape
    market_series: int  # of which carry a `market` label
    scrape_bytes: int
    updates_per_s: float  # dydx_updates_total, all channels
    cpu_cores: float  # exporter CPU seconds per second, scrapes included
    rss_mib: float
    simulator_cores: float


@dataclass(frozen=True)
class Fit:
    """y = base + slope * x, least squares."""

    base: float
    slope: float

    @classmethod
    def of(cls, xs: Sequence[float], ys: Sequence[float]) -> Fit:
        n = len(xs)
        mx, my = sum(xs) / n, sum(ys) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
        return cls(my - slope * mx, slope)

    def at(self, x: float) -> float:
        return self.base + self.slope * x


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[Samples, int]:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
        resp.raise_for_status()
        text = await resp.text()
    return parse_metrics(text), len(text.encode())


def _process_cpu_seconds(process: LoggedProcess) -> float:
    """User + system CPU seconds of a child process so far (/proc/PID/stat fields 14 and 15)."""
    stat = Path(f"/proc/{process.proc.pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    markets: int,
    rate: float,
    shard: str,
    seconds: float,
    warmup: float,
    scrape_interval: float,
    log: Callable[[str], None],
) -> Run:
    sim = await start_simulator_process(
        f"--markets={markets}", f"--rate={rate * markets / MAINNET_MARKETS:.4f}", "--seed=1"
    )
    exporter: LoggedProcess | None = None
    try:
        ws_url = await simulator_ws_url(sim)
        target = SimpleNamespace(ws_url=ws_url, base_url=ws_url.replace("ws://", "http://")[: -len("/v4/ws")])
        exporter = await start_exporter_process(target, f"--shard={shard}")
        url = str((await exporter.wait_event("exporter_started"))["url"]) + "/metrics"
        index, count = (int(n) for n in shard.split("/"))
        async with aiohttp.ClientSession() as session:
            async with session.get(target.base_url + "/v4/perpetualMarkets") as resp:
                listed = (await resp.json())["markets"]
            exported = sum(1 for t in listed if shard_of(t, count) == index)

            async def subscribed() -> bool:
                samples, _ = await _get(session, url)
                active = metric_sum(samples, "dydx_subscriptions", channel="v4_orderbook", state="active")
                return active == exported

            await wait_for(subscribed, timeout=180, interval=1.0, message=f"{exported} markets subscribed")
            log(f"{markets} markets, shard {shard}: {exported} subscribed; warm-up {warmup:g}s")
            await asyncio.sleep(warmup)
            samples, size = await _get(session, url)
            began = time.monotonic()
            cpu0, sim0 = metric_sum(samples, "process_cpu_seconds_total"), _process_cpu_seconds(sim)
            updates0 = metric_sum(samples, "dydx_updates_total")
            while time.monotonic() - began < seconds:
                await asyncio.sleep(scrape_interval)
                samples, size = await _get(session, url)
            elapsed = time.monotonic() - began
            cpu = (metric_sum(samples, "process_cpu_seconds_total") - cpu0) / elapsed
            updates = (metric_sum(samples, "dydx_updates_total") - updates0) / elapsed
            sim_cpu = (_process_cpu_seconds(sim) - sim0) / elapsed
        market_series = sum(1 for _, labels in samples if any(k == "market" for k, _ in labels))
        rss = metric_sum(samples, "process_resident_memory_bytes") / 2**20
        run = Run(markets, shard, exported, len(samples), market_series, size, updates, cpu, rss, sim_cpu)
        log(f"  {run}")
        return run
    finally:
        if exporter is not None:
            await exporter.stop()
        await sim.stop()


def model(runs: Sequence[Run], scrape_interval: float, target_markets: int, shards: int) -> dict[str, Any]:
    """Per-market figures from the runs, and what `target_markets` in `shards` HA pairs need."""
    largest = max(runs, key=lambda r: r.exported)
    per_market_series = largest.market_series / largest.exported
    fixed_series = largest.series - largest.market_series
    cpu = Fit.of([r.exported for r in runs], [r.cpu_cores for r in runs])
    cpu_per_update = Fit.of([r.updates_per_s for r in runs], [r.cpu_cores for r in runs])
    rss = Fit.of([r.exported for r in runs], [r.rss_mib for r in runs])
    per_shard = math.ceil(target_markets / shards)
    shard_series = fixed_series + per_market_series * per_shard
    exporters = 2 * shards
    return {
        "series_per_market": per_market_series,
        "series_fixed": fixed_series,
        "cpu_cores": asdict(cpu),
        "cpu_cores_by_updates_per_s": asdict(cpu_per_update),
        "updates_per_s_per_market": largest.updates_per_s / largest.exported,
        "rss_mib": asdict(rss),
        "target": {
            "markets": target_markets,
            "shards": shards,
            "exporters": exporters,
            "markets_per_shard": per_shard,
            "series_per_exporter": shard_series,
            "samples_per_s_per_exporter": shard_series / scrape_interval,
            "cpu_cores_per_exporter": cpu.at(per_shard),
            "rss_mib_per_exporter": rss.at(per_shard),
            "stored_series": exporters * shard_series,
            "stored_samples_per_s": exporters * shard_series / scrape_interval,
            "sent_samples_per_s_two_scrapers": 2 * exporters * shard_series / scrape_interval,
        },
    }


def render(runs: Sequence[Run], result: dict[str, Any], scrape_interval: float, env: dict[str, Any]) -> str:
    t = result["target"]
    cpu, rss, per_update = result["cpu_cores"], result["rss_mib"], result["cpu_cores_by_updates_per_s"]
    measured = table(
        ["markets listed", "shard", "markets exported", "series", "with market", "scrape KiB",
         f"samples/s @{scrape_interval:g}s", "updates/s", "CPU % of a core", "RSS MiB", "simulator CPU %"],
        [[r.markets, r.shard, r.exported, r.series, r.market_series, r.scrape_bytes / 1024,
          r.series / scrape_interval, r.updates_per_s, 100 * r.cpu_cores, r.rss_mib,
          100 * r.simulator_cores] for r in runs],
    )  # fmt: skip
    derived = table(
        ["figure", "value"],
        [
            ["series per market", result["series_per_market"]],
            ["series per exporter, fixed (any market count)", result["series_fixed"]],
            ["CPU % of a core per 100 markets", 100 * 100 * cpu["slope"]],
            ["CPU % of a core, base", 100 * cpu["base"]],
            ["feed updates/s per market", result["updates_per_s_per_market"]],
            [
                "CPU % of a core per 1,000 updates/s",
                100 * 1000 * per_update["slope"],
            ],
            ["RSS MiB per 100 markets", 100 * rss["slope"]],
            ["RSS MiB, base", rss["base"]],
        ],
    )
    target = table(
        ["figure", "value"],
        [
            ["exporters (shards x 2 replicas)", t["exporters"]],
            ["markets per shard", t["markets_per_shard"]],
            ["series per exporter", t["series_per_exporter"]],
            [f"samples/s per exporter @{scrape_interval:g}s", t["samples_per_s_per_exporter"]],
            ["CPU % of a core per exporter", 100 * t["cpu_cores_per_exporter"]],
            ["RSS MiB per exporter", t["rss_mib_per_exporter"]],
            ["active series in the store (both replicas)", t["stored_series"]],
            ["samples/s into the store (after dedup)", t["stored_samples_per_s"]],
            ["samples/s sent by two scrapers", t["sent_samples_per_s_two_scrapers"]],
        ],
    )
    load = env["loadavg"]
    return (
        f"Machine: {env['cpu']}, {env['cores']} cores, {env['memory_gb']} GB, Python {env['python']}; "
        f"load average {load[0]:.2f} at start, {env['loadavg_end'][0]:.2f} at end.\n\n"
        f"Measured:\n\n{measured}\n\nPer market:\n\n{derived}\n\n"
        f"{t['markets']:,} markets in {t['shards']} shards, each an HA pair:\n\n{target}\n"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.capacity", description=__doc__)
    parser.add_argument("--markets", default="67,133,267", help="market counts to run (default 67,133,267)")
    parser.add_argument("--shard-run", default="267:0/2", help="one sharded run, MARKETS:I/N ('' for none)")
    parser.add_argument(
        "--rate",
        type=float,
        default=2.0,
        help="simulator --rate at 267 markets, scaled per market (default 2: ~1,000 updates/s, mainnet-like)",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement per run (default 60)")
    parser.add_argument("--warmup", type=float, default=15.0, help="after subscribing (default 15)")
    parser.add_argument("--scrape-interval", type=float, default=15.0, help="default scrape interval (15)")
    parser.add_argument("--target-markets", type=int, default=1000)
    parser.add_argument("--target-shards", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write the runs and the model here")
    return parser.parse_args(argv)


async def amain(args: argparse.Namespace) -> int:
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {line}", file=sys.stderr, flush=True)

    plan = [(int(m), "0/1") for m in args.markets.split(",") if m]
    if args.shard_run:
        markets, shard = args.shard_run.split(":")
        plan.append((int(markets), shard))
    env = machine()
    runs = []
    for markets, shard in plan:
        runs.append(
            await measure(markets, args.rate, shard, args.seconds, args.warmup, args.scrape_interval, log)
        )
    env["loadavg_end"] = os.getloadavg()
    result = model(runs, args.scrape_interval, args.target_markets, args.target_shards)
    print(render(runs, result, args.scrape_interval, env))
    if args.json:
        doc = {"machine": env, "runs": [asdict(r) for r in runs], **result}
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
