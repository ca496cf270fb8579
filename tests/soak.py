"""Soak: the exporter against the simulator at a high rate, with seeded random faults, for a long time.

    python -m tests.soak --seconds 1800          # `make soak` (SOAK_SECONDS)
    python -m tests.soak --seconds 60 --seed 7 --markets 40 --rate 8

The exporter runs in this process (so its asyncio tasks can be counted); the simulator runs as a separate
`dydx-exporter simulate` process (so this process's RSS, fds and sockets are the exporter's, plus a small
harness). The run alternates two phases until time is up:

- a fault, drawn at random (seeded) from the simulator's fault kinds, then the time until /readyz is green
  again, which must be within the fault's length + --feed.backoff-max + what the server asked to wait
  (Retry-After, a handshake timeout) + a margin;
- a fault-free window: the simulator is paused, the exporter settles, both sides' per-market trade counters
  are read, the simulator resumes for a few seconds, is paused again, and the exporter must have counted
  exactly the trades the simulator published in between (nothing lost while connected; trades published
  while a link was down are legitimately missed and fall outside every window), and its books, prices and
  block height must equal the simulator's ground truth (GET /control/truth).

At the end, the simulator paused, the exporter's books, best prices, oracle prices, last trades and block
height must equal the simulator's ground truth (GET /control/truth) for every market. The exporter's
settings come from argv, as the CLI builds them (tests.groundtruth.support.cli_settings).

Resources (RSS, tasks, fds, sockets) and reconnects are sampled every second; the quiescent samples taken
at the start of each window (connected, subscribed, simulator paused) are the comparable ones: the last may
not exceed the first by more than the slack. The report is printed; the exit status is 1 if any check
failed. `run_soak(SoakConfig(...))` is the same run as a coroutine (the test suite runs a short one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from exporter.lifecycle import cancel_and_wait
from exporter.service import Exporter
from exporter.simulator import faults as fault_kinds
from tests.fixtures.simulator import control
from tests.groundtruth.support import (
    cli_settings,
    equal_after_traffic,
    ground_truth,
    last_trade_ids,
    published,
    wait_equal,
)
from tests.helpers import Samples, metric_sum, scrape, stop_process, wait_for
from tests.reliability.support import ReadinessTrace, Resources, Slack, resources

MB = 1024 * 1024


@dataclass(frozen=True)
class SoakConfig:
    seconds: float = 1800.0
    seed: int = 1
    markets: int = 40
    rate: float = 5.0
    block_time: float = 0.2
    #: Length of a fault-free window, seconds (drawn uniformly).
    window: tuple[float, float] = (2.0, 5.0)
    sample_interval: float = 1.0
    backoff_max: float = 1.0
    #: Scheduling noise on top of a documented recovery bound (shared CPUs).
    margin: float = 3.0
    #: Allowed growth between the first and the last quiescent sample.
    rss_slack_bytes: int = 40 * MB
    fd_slack: int = 4
    task_slack: int = 4


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since start
    res: Resources
    reconnects: float
    trades: float
    quiescent: bool = False


@dataclass(frozen=True)
class Recovery:
    kind: str
    seconds: float  # from the end of the fault to /readyz green
    bound: float

    @property
    def ok(self) -> bool:
        return self.seconds <= self.bound


@dataclass(frozen=True)
class Window:
    at: float
    seconds: float
    published: float
    counted: float
    lost_markets: tuple[str, ...]
    reconnects: float
    #: How the exporter differed from the ground truth at the window's end ("" when equal).
    truth_differs: str = ""

    @property
    def ok(self) -> bool:
        return (
            not self.lost_markets
            and self.published == self.counted
            and self.reconnects == 0
            and not self.truth_differs
        )


@dataclass
class SoakReport:
    config: SoakConfig
    samples: list[Sample] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)  # names, in the order injected
    elapsed: float = 0.0
    #: Whether the exporter equalled the ground truth at the end (None: not checked).
    truth_equal: bool | None = None

    @property
    def quiescent(self) -> list[Sample]:
        return [s for s in self.samples if s.quiescent]

    def problems(self) -> list[str]:
        found = list(self.errors)
        found += [
            f"recovery after {r.kind} took {r.seconds:.2f}s > bound {r.bound:.2f}s"
            for r in self.recoveries
            if not r.ok
        ]
        for w in self.windows:
            if not w.ok:
                found.append(
                    f"window at {w.at:.0f}s: published {w.published:.0f}, counted {w.counted:.0f}, "
                    f"markets off {list(w.lost_markets)[:5]}, reconnects {w.reconnects:.0f}"
                    + (f", ground truth: {w.truth_differs}" if w.truth_differs else "")
                )
        if not self.windows:
            found.append("no fault-free window completed")
        if self.truth_equal is None:
            found.append("the ground truth was not compared")
        quiet = self.quiescent
        if len(quiet) >= 2:
            first, last = quiet[0].res, quiet[-1].res
            c = self.config
            if last.rss_bytes > first.rss_bytes + c.rss_slack_bytes:
                found.append(f"RSS grew {(last.rss_bytes - first.rss_bytes) / MB:.1f} MB")
            slack = Slack(tasks=c.task_slack, fds=c.fd_slack, sockets=c.fd_slack)
            found += [f"grew: {excess}" for excess in last.over(first, slack)]
        return found

    def rss_slope_mb_per_hour(self, last_half: bool = False) -> float:
        """Least-squares RSS trend over the quiescent samples (or the last half of them: the trade-id
        de-duplication window, 2048 ids per market, fills up first, so early growth is expected)."""
        quiet = self.quiescent
        if last_half:
            quiet = quiet[len(quiet) // 2 :]
        if len(quiet) < 3:
            return 0.0
        xs = [s.at for s in quiet]
        ys = [s.res.rss_bytes / MB for s in quiet]
        slope = statistics.linear_regression(xs, ys).slope
        return slope * 3600

    def render(self) -> str:
        c = self.config
        lines = [
            f"soak: {self.elapsed:.0f}s, seed {c.seed}, {c.markets} markets, rate {c.rate}, "
            f"block time {c.block_time}s",
            "",
            "   time    RSS MB  tasks  fds  sockets  reconnects  trades",
        ]
        step = max(1, len(self.samples) // 20)
        shown = self.samples[::step] + ([self.samples[-1]] if self.samples else [])
        lines.extend(
            f"{s.at:7.0f}s  {s.res.rss_bytes / MB:7.1f}  {s.res.tasks:5d}  {s.res.fds:3d}  "
            f"{s.res.sockets:7d}  {s.reconnects:10.0f}  {s.trades:6.0f}{'  *' if s.quiescent else ''}"
            for s in dict.fromkeys(shown)
        )
        lines.append("(* quiescent: connected, subscribed, simulator paused)")
        lines.append(
            f"RSS trend over quiescent samples: {self.rss_slope_mb_per_hour():+.1f} MB/hour "
            f"(last half: {self.rss_slope_mb_per_hour(last_half=True):+.1f} MB/hour)"
        )
        lines.append("")
        injected = {name: self.faults.count(name) for name in sorted(set(self.faults))}
        lines.append(f"faults injected: {len(self.faults)} {injected}")
        lines.append("recoveries (seconds from the end of the fault to /readyz 200):")
        kinds = sorted({r.kind for r in self.recoveries})
        for kind in kinds:
            times = [r.seconds for r in self.recoveries if r.kind == kind]
            bound = max(r.bound for r in self.recoveries if r.kind == kind)
            lines.append(
                f"  {kind:<22} n={len(times):3d}  median {statistics.median(times):5.2f}  "
                f"max {max(times):5.2f}  bound {bound:5.2f}"
            )
        published = sum(w.published for w in self.windows)
        counted = sum(w.counted for w in self.windows)
        lines.append("")
        lines.append(
            f"fault-free windows: {len(self.windows)}, {sum(w.seconds for w in self.windows):.0f}s, "
            f"trades published {published:.0f}, counted {counted:.0f}"
        )
        verdict = {None: "not compared", True: "equal", False: "DIFFERENT"}[self.truth_equal]
        lines.append(f"books, prices and block height against the simulator's ground truth: {verdict}")
        problems = self.problems()
        lines.append("")
        lines.append("PASS" if not problems else "FAIL:\n  " + "\n  ".join(problems))
        return "\n".join(lines)


# --- the simulator as a process ------------------------------------------------------------------------


class SimulatorProcess:
    """`python -m exporter simulate` on an OS-assigned loopback port, its log in `workdir`.

    Not tests.helpers.LoggedProcess: that keeps every log event in this process, whose RSS the soak
    measures over half an hour.
    """

    def __init__(self, workdir: Path, args: Sequence[str]) -> None:
        self._log_path = workdir / "simulator.log"
        self._args = list(args)
        self._proc: asyncio.subprocess.Process | None = None
        self.ws_url = ""
        self.base_url = ""

    async def start(self) -> None:
        with self._log_path.open("wb") as log:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "exporter", "simulate", "--web.listen-address", "127.0.0.1:0",
                "--log.format", "json", *self._args,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        started = await wait_for(self._started, timeout=20, interval=0.1, message="simulator_started")
        assert started is not None
        self.ws_url = str(started["url"])
        self.base_url = self.ws_url.replace("ws://", "http://", 1).removesuffix("/v4/ws")

    def _started(self) -> dict[str, Any] | None:
        assert self._proc is not None
        if self._proc.returncode is not None:
            raise RuntimeError(f"simulator exited with {self._proc.returncode}: {self._log_path.read_text()}")
        for line in self._log_path.read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                event = orjson.loads(line)
                if isinstance(event, dict) and event.get("event") == "simulator_started":
                    return event
        return None

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            await stop_process(proc)


# --- faults ----------------------------------------------------------------------------------------------

DISCONNECT: dict[str, Any] = {"kind": "disconnect", "code": 1012}
#: Detection timings of the soak's exporter (see run_soak): a stall must outlast them to break the feed.
PING_TIMEOUT = 2.0
SILENCE_TIMEOUT = 3.0
HANDSHAKE_TIMEOUT = 1.0


@dataclass(frozen=True)
class Fault:
    name: str
    requests: tuple[dict[str, Any], ...]  # POSTed in order to /control/faults
    lasts: float = 0.0  # seconds in force
    extra: float = 0.0  # a wait the exporter is told to make (Retry-After) or a detection timeout
    breaks: bool = True  # /readyz must go red, then green; otherwise it must stay green


#: The soak's variants of every fault kind of the simulator's registry: a kind missing here fails the draw
#: (and tests/simulator/test_fault_registry.py).
VARIANTS: dict[str, tuple[str, ...]] = {
    "disconnect": ("disconnect", "abrupt", "heartbeat"),
    "malformed": ("malformed",),
    "error": ("error",),
    "gap": ("gap",),
    "stall": ("stall", "stall_channel"),
    "cross": ("cross",),
    "lag": ("lag",),
    "reject": ("reject_429",),
    "penalty": ("penalty",),
    "rest_error": ("snapshot_errors",),
    "rest_slow": ("slow_snapshots",),
    "silent": ("silent",),
    "chain_halt": ("chain_halt",),
    "indexer_lag": ("indexer_lag",),
    "rest_lag": ("rest_lag",),
    "link_lag": ("link_lag",),
    "rpc_down": ("rpc_down",),
    "rpc_catching_up": ("rpc_catching_up",),
    "ghost_level": ("ghost_level",),
    "oracle_freeze": ("oracle_freeze",),
    "oracle_skew": ("oracle_skew",),
    "candle_gap": ("candle_gap",),
    "schema_change": ("schema_change",),
}


def draw_fault(rng: random.Random, markets: Sequence[str]) -> Fault:
    """A fault drawn at random from the simulator's fault kinds; its parameters too."""
    name = rng.choice([variant for kind in fault_kinds.KINDS for variant in VARIANTS[kind]])
    seconds = round(rng.uniform(0.5, 2.5), 2)
    if name == "disconnect":
        return Fault(name, (DISCONNECT,))
    if name == "abrupt":
        return Fault(name, ({"kind": "disconnect", "abrupt": True},))
    if name == "heartbeat":
        return Fault(name, ({"kind": "disconnect", "code": 1011},))
    if name == "stall":  # everything, pings included: the link is dead after PING_TIMEOUT
        seconds += PING_TIMEOUT
        return Fault(name, ({"kind": "stall", "seconds": seconds},), seconds)
    if name == "stall_channel":  # block height only: dead after SILENCE_TIMEOUT
        seconds += SILENCE_TIMEOUT
        return Fault(name, ({"kind": "stall", "seconds": seconds, "channel": "v4_block_height"},), seconds)
    if name == "malformed":
        return Fault(name, ({"kind": "malformed", "count": rng.randint(1, 5)},), breaks=False)
    if name == "error":
        return Fault(name, ({"kind": "error"},), breaks=False)
    if name == "gap":
        return Fault(name, ({"kind": "gap", "count": rng.randint(1, 3)},), breaks=False)
    if name == "cross":
        market = rng.choice(markets)
        return Fault(name, ({"kind": "cross", "market": market, "seconds": seconds},), seconds, breaks=False)
    if name == "lag":
        return Fault(name, ({"kind": "lag", "seconds": 1.0, "duration": seconds},), seconds, breaks=False)
    if name == "reject_429":
        return Fault(
            name, ({"kind": "reject", "seconds": seconds, "retry_after": 1}, DISCONNECT), seconds, 1.0
        )
    if name == "silent":
        return Fault(name, ({"kind": "silent", "seconds": seconds}, DISCONNECT), seconds, HANDSHAKE_TIMEOUT)
    if name == "penalty":  # dropped with 4008: the links stay away the penalty, up to a tenth more
        penalty = rng.randint(1, 2)
        return Fault(name, ({"kind": "penalty", "seconds": penalty},), extra=penalty * 1.1)
    if name == "chain_halt":  # the links go silent: dead after SILENCE_TIMEOUT
        seconds += SILENCE_TIMEOUT
        return Fault(name, ({"kind": "chain_halt", "seconds": seconds},), seconds)
    if name in ("indexer_lag", "link_lag"):  # data held back 0.5 s, well inside the silence timeout
        request = {"kind": name, "seconds": 0.5, "duration": seconds}
        return Fault(name, (request,), seconds, breaks=False)
    if name == "schema_change":  # snapshots gain a field; the reconnect fetches them
        request = {"kind": name, "channel": "v4_markets", "seconds": seconds}
        return Fault(name, (request, DISCONNECT), seconds)
    if name == "candle_gap":  # one candle jumps ahead; nothing else changes
        request = {"kind": name, "market": rng.choice(markets), "resolution": "1MIN"}
        return Fault(name, (request,), breaks=False)
    if name in ("oracle_freeze", "oracle_skew"):  # the oracle stops or drifts; the feed stays healthy
        request = {"kind": name, "market": rng.choice(markets), "seconds": seconds}
        if name == "oracle_skew":
            request["ratio"] = round(rng.uniform(0.02, 0.2), 3)
        return Fault(name, (request,), seconds, breaks=False)
    if name == "ghost_level":  # a level REST never has, removed from the stream at the end
        request = {"kind": name, "market": rng.choice(markets), "seconds": seconds}
        return Fault(name, (request,), seconds, breaks=False)
    if name == "rest_lag":
        return Fault(name, ({"kind": name, "blocks": 5, "seconds": seconds},), seconds, breaks=False)
    if name in ("rpc_down", "rpc_catching_up"):
        return Fault(name, ({"kind": name, "seconds": seconds},), seconds, breaks=False)
    if name == "snapshot_errors":
        return Fault(name, ({"kind": "rest_error", "seconds": seconds, "status": 500}, DISCONNECT), seconds)
    return Fault(name, ({"kind": "rest_slow", "seconds": seconds, "delay": 0.5}, DISCONNECT), seconds)


# --- the run ---------------------------------------------------------------------------------------------


class _Soak:
    def __init__(self, config: SoakConfig, sim: SimulatorProcess, exp: Exporter) -> None:
        self.config = config
        self.sim = sim
        self.exp = exp
        self.report = SoakReport(config)
        self.began = time.monotonic()
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def close(self) -> None:
        await self.http.close()

    async def control(self, method: str, path: str, body: object = None) -> None:
        await control(self.sim, method, path, body, session=self.http)

    async def ready(self) -> bool:
        async with self.http.get(self.exp.url + "/readyz") as resp:
            return resp.status == 200

    async def exporter_samples(self) -> Samples:
        return await scrape(self.exp.metrics_url, self.http)

    async def truth(self) -> Samples:
        return await published(self.sim, self.http)

    async def sample(self, quiescent: bool = False) -> None:
        s = await self.exporter_samples()
        self.report.samples.append(
            Sample(
                at=time.monotonic() - self.began,
                res=resources(),
                reconnects=metric_sum(s, "dydx_ws_reconnects_total"),
                trades=metric_sum(s, "dydx_trades_total"),
                quiescent=quiescent,
            )
        )

    async def sampler(self) -> None:
        while True:
            await asyncio.sleep(self.config.sample_interval)
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                await self.sample()

    async def run(self, deadline: float) -> None:
        rng = random.Random(self.config.seed)
        await wait_for(self.ready, timeout=30, interval=0.1, message="exporter ready at start")
        markets = sorted(self.exp.pool.markets)
        await self.window(rng)
        while time.monotonic() < deadline:
            await self.fault(rng, markets)
            if time.monotonic() < deadline:
                await self.window(rng)

    async def fault(self, rng: random.Random, markets: Sequence[str]) -> None:
        fault = draw_fault(rng, markets)
        self.report.faults.append(fault.name)
        bound = fault.extra + self.config.backoff_max + self.config.margin
        async with ReadinessTrace(self.exp.url) as trace:
            began = time.monotonic()
            for body in fault.requests:
                await self.control("POST", "/control/faults", body)
            ended = began + fault.lasts
            await asyncio.sleep(fault.lasts)
            if not fault.breaks:
                await asyncio.sleep(0.2)  # a red phase it should not cause would show by now
                red = trace.went_red_since(began)
                if red is not None:
                    self.report.errors.append(f"{fault.name} made /readyz red: {red[1].strip()[:200]}")
                return
            try:
                green = await trace.wait_green_after(began, timeout=fault.lasts + bound + 10)
            except AssertionError as exc:
                self.report.errors.append(f"no recovery after {fault.name}: {exc}")
                await self.control("DELETE", "/control/faults")
                await wait_for(self.ready, timeout=30, interval=0.1, message=f"ready after {fault.name}")
                return
        self.report.recoveries.append(Recovery(fault.name, max(0.0, green - ended), bound))

    async def window(self, rng: random.Random) -> None:
        """A fault-free window, bracketed by pauses: the exporter must count exactly what was published."""
        seconds = rng.uniform(*self.config.window)
        await self.control("POST", "/control/pause")
        try:
            e0, _ = await self.settled()
            t0 = await self.truth()
            since = last_trade_ids(await ground_truth(self.sim, session=self.http))
            await self.sample(quiescent=True)
        finally:
            await self.control("POST", "/control/resume")
        await asyncio.sleep(seconds)
        await self.control("POST", "/control/pause")
        try:
            t1 = await self.truth()
            published = _by_market(t1, "dydx_simulator_trades_published_total", "market")
            published = {m: n - _by_market(t0, "dydx_simulator_trades_published_total", "market").get(m, 0)
                         for m, n in published.items()}  # fmt: skip
            e1 = e0

            async def caught_up() -> bool:
                nonlocal e1
                e1 = await self.exporter_samples()
                return _counted(e1, e0) == {m: n for m, n in published.items() if n}

            with contextlib.suppress(AssertionError):
                await wait_for(caught_up, timeout=5, interval=0.1)
            counted = _counted(e1, e0)
            lost = tuple(sorted(m for m in published if counted.get(m, 0) != published[m]))
            reconnects = metric_sum(e1, "dydx_ws_reconnects_total") - metric_sum(
                e0, "dydx_ws_reconnects_total"
            )
            differs = ""
            try:
                await wait_equal(self.exp.metrics_url, self.sim, False, since, timeout=5, session=self.http)
            except AssertionError as exc:
                differs = str(exc)[:500]
            self.report.windows.append(
                Window(
                    at=time.monotonic() - self.began,
                    seconds=seconds,
                    published=sum(published.values()),
                    counted=sum(counted.values()),
                    lost_markets=lost,
                    reconnects=reconnects,
                    truth_differs=differs,
                )
            )
        finally:
            await self.control("POST", "/control/resume")

    async def compare_with_truth(self) -> None:
        """A few blocks of clean traffic, then paused: the exporter must equal the ground truth (counters
        aside, as frames queued to connections the faults cut are lost for good)."""
        try:
            await equal_after_traffic(self.exp.metrics_url, self.sim, session=self.http)
            self.report.truth_equal = True
        except AssertionError as exc:
            self.report.truth_equal = False
            self.report.errors.append(f"ground truth: {exc}")

    async def settled(self) -> tuple[Samples, float]:
        """With the simulator paused: every subscription active and the trade count still for 0.3 s."""
        last: list[float] = []

        async def still() -> Samples | None:
            s = await self.exporter_samples()
            trades = metric_sum(s, "dydx_trades_total")
            pending = metric_sum(s, "dydx_subscriptions", state="pending")
            last.append(trades)
            return s if pending == 0 and len(last) >= 4 and len(set(last[-4:])) == 1 else None

        samples: Samples | None = await wait_for(still, timeout=10, interval=0.1, message="exporter settled")
        assert samples is not None
        return samples, last[-1]


def _by_market(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (sample, labels), value in samples.items():
        if sample == name:
            market = dict(labels).get(label, "")
            out[market] = out.get(market, 0.0) + value
    return out


def _counted(now: Samples, before: Samples) -> dict[str, float]:
    a = _by_market(now, "dydx_trades_total", "market")
    b = _by_market(before, "dydx_trades_total", "market")
    return {m: n - b.get(m, 0.0) for m, n in a.items() if n - b.get(m, 0.0)}


async def run_soak(config: SoakConfig) -> SoakReport:
    """Runs one soak and returns its report (stops everything it started, whatever happens)."""
    with tempfile.TemporaryDirectory(prefix="dydx-soak-") as tmp:
        sim = SimulatorProcess(
            Path(tmp),
            [
                "--seed", str(config.seed), "--markets", str(config.markets), "--rate", str(config.rate),
                "--block-time", str(config.block_time), "--ping-interval", "0.5", "--pong-timeout", "3",
                # keeps subscriptions pending for a while after each reconnect: a red /readyz to see
                "--snapshot-delay", "0.2",
            ],
        )  # fmt: skip
        exp: Exporter | None = None
        soak: _Soak | None = None
        sampler: asyncio.Task[None] | None = None
        began = time.monotonic()
        try:
            await sim.start()
            settings = cli_settings(
                sim,
                f"--feed.backoff-max={config.backoff_max}",
                f"--feed.ping-timeout={PING_TIMEOUT}",
                f"--feed.silence-timeout={SILENCE_TIMEOUT}",
                f"--feed.handshake-timeout={HANDSHAKE_TIMEOUT}",
                "--data.stale-after=5",
            )
            exp = Exporter(settings)
            await exp.start()
            soak = _Soak(config, sim, exp)
            sampler = asyncio.create_task(soak.sampler(), name="soak-sampler")
            await soak.run(began + config.seconds)
            await soak.window(random.Random(config.seed + 1))  # the final quiescent sample and check
            await soak.compare_with_truth()
            return soak.report
        finally:
            await cancel_and_wait(sampler)
            if soak is not None:
                soak.report.elapsed = time.monotonic() - began
                await soak.close()
            if exp is not None:
                await exp.stop()
            await sim.stop()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=SoakConfig.seconds)
    p.add_argument("--seed", type=int, default=SoakConfig.seed)
    p.add_argument("--markets", type=int, default=SoakConfig.markets)
    p.add_argument("--rate", type=float, default=SoakConfig.rate)
    p.add_argument("--block-time", type=float, default=SoakConfig.block_time)
    p.add_argument("--log.level", dest="log_level", default="error", help="the exporter's log level (stderr)")
    args = p.parse_args(argv)
    from exporter import logs

    logs.configure(args.log_level, "json")
    config = SoakConfig(
        seconds=args.seconds, seed=args.seed, markets=args.markets, rate=args.rate, block_time=args.block_time
    )
    report = asyncio.run(run_soak(config))
    print(report.render())
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
