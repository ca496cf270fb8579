"""The benchmark scenarios. Each returns a JSON-ready dict; `bench.report` turns them into tables.

Every measured consumer runs in a fresh process of its own, beside a source process, so on a 2-core
machine each has a core (when the neighbours let it). Throughput is reported twice: updates per wall
second, and updates per CPU second of the consumer (1 / CPU time per update), the figure that survives a
noisy machine. Best of N repeats; the spread across repeats is kept as the noise figure.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from bench.consumers import CONSUMERS, LAG_TICK_S, ConsumerSpec, build_pipeline, consume
from bench.procs import rss_bytes, run_in_process
from bench.source import PROMETHEUS_ACCEPT, SourceConfig, SourceProcess
from bench.workload import Workload, decoded_cycle, frames_for_updates

SCENARIOS: Final = ("ingest", "latency", "scrape", "footprint", "growth")
#: Assumed mainnet-like rate over 267 markets, from §5 of the protocol reference (see BENCHMARKS.md).
MAINNET_RATE: Final = 1_000.0
MAINNET_MARKETS: Final = 267


@dataclass(frozen=True)
class Plan:
    """How big each scenario runs: `full()` for `make bench`, `quick()` for the smoke run."""

    repeat: int
    ingest_markets: int
    ingest_updates: int
    ingest_naive_updates: int
    latency_seconds: float
    latency_control_seconds: float
    scrape_markets: tuple[int, ...]
    scrape_repeat: int
    footprint_seconds: float
    footprint_scrape_interval: float
    soak_updates: int
    growth_markets: tuple[int, ...]
    growth_rates: tuple[float, ...]
    growth_seconds: float
    growth_blast_updates: int

    @classmethod
    def full(cls) -> Plan:
        return cls(
            repeat=3,
            ingest_markets=32,
            ingest_updates=600_000,
            ingest_naive_updates=200_000,
            latency_seconds=20.0,
            latency_control_seconds=8.0,
            scrape_markets=(10, 100, 267),
            scrape_repeat=5,
            footprint_seconds=30.0,
            footprint_scrape_interval=15.0,
            soak_updates=10_000_000,
            growth_markets=(10, 100, 267),
            growth_rates=(1_000.0, 10_000.0, 100_000.0),
            growth_seconds=4.0,
            growth_blast_updates=400_000,
        )

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            repeat=1,
            ingest_markets=10,
            ingest_updates=20_000,
            ingest_naive_updates=5_000,
            latency_seconds=1.5,
            latency_control_seconds=0.5,
            scrape_markets=(10, 100),
            scrape_repeat=1,
            footprint_seconds=1.5,
            footprint_scrape_interval=0.5,
            soak_updates=40_000,
            growth_markets=(10, 100),
            growth_rates=(1_000.0, 10_000.0),
            growth_seconds=0.5,
            growth_blast_updates=10_000,
        )


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(q / 100.0 * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[rank])


def _run_consumer(src: SourceProcess, kind: str, spec: ConsumerSpec, timeout: float) -> dict[str, Any]:
    """One consumer run against `src`, joined with the source's view of the same connection."""
    result: dict[str, Any] = run_in_process(consume, kind, spec, timeout=timeout)
    stream = src.stream_stats(timeout=30.0)
    result["source"] = dict(stream)
    updates = int(stream["updates"])
    result["updates"] = updates
    result["source_bytes"] = int(stream["bytes"])
    if kind == "null":
        # The null consumer does not parse frames: the source's own clock is the measure.
        result["frames"] = int(stream["frames"])
        result["wall_seconds"] = float(stream["seconds"])
    wall, cpu = float(result["wall_seconds"]), float(result["cpu_seconds"])
    result["updates_per_s"] = updates / wall if wall > 0 else 0.0
    result["cpu_us_per_update"] = cpu / updates * 1e6 if updates else 0.0
    result["updates_per_cpu_s"] = updates / cpu if cpu > 0 else 0.0
    # Every frame received and every update counted, and (the exporter's pipeline) not one frame refused
    # and every book equal to what the source sent: a broken pipeline is never reported as fast.
    result["counts_consistent"] = kind == "null" or (
        int(result["frames"]) == int(stream["frames"])
        and result.get("metrics_updates") is not None
        and int(result["metrics_updates"]) == updates
        and not result.get("pipeline_problems")
    )
    return result


def _best(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Best of N (least CPU per update; wall rate from the fastest run), with the spread as noise."""
    best = dict(min(runs, key=lambda r: float(r["cpu_us_per_update"])))
    cpus = [float(r["cpu_us_per_update"]) for r in runs]
    walls = [float(r["updates_per_s"]) for r in runs]
    best["updates_per_s"] = max(walls)
    best["runs"] = len(runs)
    best["cpu_us_per_update_all"] = cpus
    best["updates_per_s_all"] = walls
    best["noise_cpu_pct"] = (max(cpus) - min(cpus)) / min(cpus) * 100 if min(cpus) > 0 else 0.0
    best["counts_consistent"] = all(bool(r["counts_consistent"]) for r in runs)
    best["pipeline_problems"] = next(
        (r["pipeline_problems"] for r in runs if r.get("pipeline_problems")), best.get("pipeline_problems")
    )
    best.pop("latency_ns", None)
    best.pop("source", None)
    return best


# -- 1. ingest -----------------------------------------------------------------------------------------


INGEST_CONSUMERS: Final = CONSUMERS
INGEST_WORKLOADS: Final = (
    ("realistic, unbatched", "realistic", False),
    ("realistic, batched", "realistic", True),
    ("one-trade frames", "trades1", False),
)


def ingest(plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {"markets": plan.ingest_markets, "workloads": {}}
    for label, mix, batched in INGEST_WORKLOADS:
        workload = Workload(markets=plan.ingest_markets, batched=batched, mix=mix)
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in INGEST_CONSUMERS}
        for consumers, updates in (
            (("null", "bare", "pipeline", "exporter"), plan.ingest_updates),
            (("naive",), plan.ingest_naive_updates),
        ):
            frames = frames_for_updates(workload, updates)
            with SourceProcess(SourceConfig(workload, frames=frames)) as src:
                for _ in range(plan.repeat):
                    for kind in consumers:
                        spec = ConsumerSpec(src.ws_url, workload, expect_frames=frames)
                        runs[kind].append(_run_consumer(src, kind, spec, timeout=300.0))
        summary: dict[str, Any] = {kind: _best(kind_runs) for kind, kind_runs in runs.items()}
        bare, naive, pipe, link = summary["bare"], summary["naive"], summary["pipeline"], summary["exporter"]
        summary["ratios"] = {
            "exporter_vs_bare_cpu": link["updates_per_cpu_s"] / bare["updates_per_cpu_s"],
            "exporter_vs_naive_cpu": link["updates_per_cpu_s"] / naive["updates_per_cpu_s"],
            "pipeline_vs_bare_cpu": pipe["updates_per_cpu_s"] / bare["updates_per_cpu_s"],
            "pipeline_vs_naive_cpu": pipe["updates_per_cpu_s"] / naive["updates_per_cpu_s"],
            "pipeline_vs_bare_wall": pipe["updates_per_s"] / bare["updates_per_s"],
            "pipeline_vs_naive_wall": pipe["updates_per_s"] / naive["updates_per_s"],
        }
        summary["frame_bytes_avg"] = bare["source_bytes"] / bare["frames"] if bare.get("frames") else 0
        summary["updates_per_frame"] = bare["updates"] / bare["frames"] if bare.get("frames") else 0
        out["workloads"][label] = summary
        log(
            f"ingest {label} (updates/CPU-s): bare {bare['updates_per_cpu_s']:,.0f},"
            f" naive {naive['updates_per_cpu_s']:,.0f}, pipeline {pipe['updates_per_cpu_s']:,.0f},"
            f" exporter {link['updates_per_cpu_s']:,.0f}"
        )
    return out


# -- 2. latency ----------------------------------------------------------------------------------------


def _paced_pipeline(
    workload: Workload, rate: float, seconds: float, scrape_interval: float, instrumented: bool = True
) -> dict[str, Any]:
    """The pipeline at a steady `rate`; `instrumented` adds per-frame timing and the loop-lag ticker
    (whose 2,000 wake-ups/s cost CPU of their own: footprint runs without them)."""
    config = SourceConfig(workload, rate=rate, duration=seconds)
    with SourceProcess(config) as src:
        spec = ConsumerSpec(
            src.ws_url,
            workload,
            record_latency=instrumented,
            scrape_interval=scrape_interval,
            measure_loop_lag=instrumented,
        )
        run = _run_consumer(src, "pipeline", spec, timeout=seconds + 120.0)
    return _summarise_paced(run)


def _summarise_paced(run: dict[str, Any]) -> dict[str, Any]:
    latencies = sorted(run.pop("latency_ns", []))
    scrapes = run["source"]["scrapes"]
    lag_events = [(float(w), float(lag), float(cpu)) for w, lag, cpu in run.pop("lag_events", [])]
    ok = [s for s in scrapes if s.get("status") == 200]
    # A stall belongs to a scrape when the stalled interval [woke - lag, woke] overlaps the scrape.
    per_scrape_wall, per_scrape_cpu = [], []
    for s in ok:
        hits = [(lag, cpu) for woke, lag, cpu in lag_events if s["start"] <= woke and woke - lag <= s["end"]]
        per_scrape_wall.append(max((lag for lag, _ in hits), default=0.0))
        per_scrape_cpu.append(max((cpu for _, cpu in hits), default=0.0))
    outside = [
        (lag, cpu)
        for woke, lag, cpu in lag_events
        if not any(s["start"] <= woke and woke - lag <= s["end"] for s in ok)
    ]
    durations = sorted(s["end"] - s["start"] for s in ok)
    wall = float(run["wall_seconds"])
    slow_in_scrapes: dict[str, list[float]] = {}
    slow_elsewhere: dict[str, list[float]] = {}
    for ended, took, cpu, name in run.pop("slow_callbacks", []):
        in_scrape = any(s["start"] <= ended and ended - took <= s["end"] for s in ok)
        table = slow_in_scrapes if in_scrape else slow_elsewhere
        entry = table.setdefault(name, [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] = max(entry[1], took * 1e3)
        entry[2] = max(entry[2], cpu * 1e3)
    return {
        "rate_target": None,
        "updates": run["updates"],
        "frames": run["frames"],
        "seconds": wall,
        "rate_achieved": run["updates"] / wall if wall else 0.0,
        "cpu_us_per_update": run["cpu_us_per_update"],
        "cpu_pct": float(run["cpu_seconds"]) / wall * 100 if wall else 0.0,
        "rss_mb": run["rss_end"] / 1e6,
        "latency_us": {
            "p50": percentile(latencies, 50) / 1e3,
            "p99": percentile(latencies, 99) / 1e3,
            "p99.9": percentile(latencies, 99.9) / 1e3,
            "max": (latencies[-1] / 1e3) if latencies else float("nan"),
            "samples": len(latencies),
        },
        "loop_lag_ms": {
            "max": float(run["lag_max_s"]) * 1e3,
            "max_on_cpu": max((cpu for _, _, cpu in lag_events), default=0.0) * 1e3,
            "max_during_scrape": max(per_scrape_wall, default=0.0) * 1e3,
            "max_on_cpu_during_scrape": max(per_scrape_cpu, default=0.0) * 1e3,
            "median_scrape_max_on_cpu": percentile(sorted(per_scrape_cpu), 50) * 1e3 if ok else None,
            "max_outside_scrapes": max((lag for lag, _ in outside), default=0.0) * 1e3,
            "max_on_cpu_outside_scrapes": max((cpu for _, cpu in outside), default=0.0) * 1e3,
            "ticks": run["lag_ticks"],
            "tick_ms": LAG_TICK_S * 1e3,
            "events_over_1ms": len(lag_events),
        },
        "slow_callbacks": {
            "threshold_ms": 1.0,
            "during_scrapes": _slow_table(slow_in_scrapes),
            "elsewhere": _slow_table(slow_elsewhere),
        },
        "gc_pauses_ms": {
            f"gen{gen}": {"count": int(n), "total": total, "max": longest}
            for gen, (n, total, longest) in sorted(run.get("gc_pauses", {}).items())
        },
        "scrapes": {
            "count": len(ok),
            "failed": len(scrapes) - len(ok),
            "duration_ms_p50": percentile(durations, 50) * 1e3 if durations else None,
            "duration_ms_max": durations[-1] * 1e3 if durations else None,
            "wire_bytes": ok[-1]["wire_bytes"] if ok else None,
            "encoding": ok[-1]["encoding"] if ok else None,
            "content_type": ok[-1]["content_type"] if ok else None,
        },
        "counts_consistent": run["counts_consistent"],
    }


def _slow_table(table: Mapping[str, list[float]]) -> list[dict[str, Any]]:
    """Slow loop callbacks by name, worst (on-CPU) first."""
    rows: list[dict[str, Any]] = [
        {"callback": name, "count": int(n), "max_wall_ms": wall, "max_cpu_ms": cpu}
        for name, (n, wall, cpu) in table.items()
    ]
    return sorted(rows, key=lambda r: -r["max_cpu_ms"])[:10]


def latency(plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    workload = Workload(markets=MAINNET_MARKETS, batched=False)
    with_scrapes = _paced_pipeline(workload, 10_000.0, plan.latency_seconds, scrape_interval=1.0)
    control = _paced_pipeline(workload, 10_000.0, plan.latency_control_seconds, scrape_interval=0.0)
    log(
        f"latency: p99 {with_scrapes['latency_us']['p99']:.1f} us, loop stall during scrape"
        f" {with_scrapes['loop_lag_ms']['max_during_scrape']:.2f} ms wall,"
        f" {with_scrapes['loop_lag_ms']['max_on_cpu_during_scrape']:.2f} ms on-CPU"
    )
    return {"rate": 10_000.0, "markets": MAINNET_MARKETS, "with_scrapes": with_scrapes, "no_scrapes": control}


# -- 3. scrape -----------------------------------------------------------------------------------------


async def _scrape_sizes(markets: int, repeat: int) -> dict[str, Any]:
    import aiohttp
    from prometheus_client import generate_latest

    from exporter.web.app import WebServer

    workload = Workload(markets=markets, batched=False)
    processor, collector = build_pipeline(workload)
    handle = processor.handle
    handle("conn-0", workload.connected_frame(), time.time())
    for message_id, sub in enumerate(workload.subscriptions, start=1):
        handle("conn-0", workload.subscribed_frame(sub, message_id), time.time())
    for payload in decoded_cycle(workload, first_message_id=len(workload.subscriptions) + 1):
        handle("conn-0", payload, time.time())

    def best_of(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times) * 1e3

    text = generate_latest(collector.registry)
    samples = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    out: dict[str, Any] = {
        "markets": markets,
        "samples": samples,
        "text_bytes": len(text),
        "gzip_bytes": len(gzip.compress(text, 6)),
        "generate_latest_ms": best_of(lambda: generate_latest(collector.registry)),
    }
    render_text = getattr(collector, "render_text", None)
    if callable(render_text):
        out["render_text_ms"] = best_of(render_text)
    render_async = getattr(collector.registry, "render_async", None)
    if callable(render_async):
        out["render_async_ms"], out["render_async_longest_slice_ms"], out["render_async_slices"] = (
            _render_slices(render_async, repeat)
        )

    server = WebServer("127.0.0.1", 0, "/metrics", collector.registry, [processor])
    await server.start()
    lag_max = lag_max_cpu = 0.0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal lag_max, lag_max_cpu
        while not stop.is_set():
            expected = time.monotonic() + LAG_TICK_S
            cpu_before = time.thread_time()
            await asyncio.sleep(LAG_TICK_S)
            lag_max = max(lag_max, time.monotonic() - expected)
            lag_max_cpu = max(lag_max_cpu, time.thread_time() - cpu_before)

    tick = asyncio.create_task(ticker())
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            for label, headers in (
                ("http_plain", {"Accept-Encoding": "identity"}),
                ("http_gzip_openmetrics", {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}),
            ):
                times, size = [], 0
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    async with session.get(url, headers=headers) as resp:
                        body = await resp.read()
                    times.append(time.perf_counter() - t0)
                    size = len(body)
                out[f"{label}_ms"] = min(times) * 1e3
                out[f"{label}_bytes"] = size
    finally:
        stop.set()
        await tick
        await server.stop()
    out["loop_lag_max_ms"] = lag_max * 1e3
    out["loop_lag_max_on_cpu_ms"] = lag_max_cpu * 1e3
    out["rss_mb"] = rss_bytes() / 1e6
    return out


_EMPTY_SLICE_S: Final = 20e-6


def _render_slices(render_async: Callable[..., Any], repeat: int) -> tuple[float, float, int]:
    """Steps the render coroutine by hand, timing each synchronous stretch between its yields: how long
    the render holds the loop in one go, free of scheduling noise. Best of `repeat`."""
    best: tuple[float, float, int] | None = None
    for _ in range(max(repeat, 3)):
        coro = render_async(False)
        slices: list[float] = []
        while True:
            t0 = time.perf_counter()
            try:
                coro.send(None)
            except StopIteration:
                slices.append(time.perf_counter() - t0)
                break
            slices.append(time.perf_counter() - t0)
        # A yield is several bare resumptions (exporter.loop.let_io_in): count the stretches that did work.
        row = (sum(slices) * 1e3, max(slices) * 1e3, sum(1 for s in slices if s > _EMPTY_SLICE_S))
        if best is None or row[1] < best[1]:
            best = row
    assert best is not None
    return best


def scrape_sizes(markets: int, repeat: int) -> dict[str, Any]:
    """Process entry point: the full catalog for `markets` markets, rendered and served."""
    from exporter.logs import configure

    configure(level="warn", fmt="json")
    result: dict[str, Any] = asyncio.run(_scrape_sizes(markets, repeat))
    return result


def scrape(plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    rows = [run_in_process(scrape_sizes, m, plan.scrape_repeat, timeout=180.0) for m in plan.scrape_markets]
    for row in rows:
        log(f"scrape {row['markets']} markets: {row['samples']} samples, {row['http_plain_ms']:.1f} ms")
    return {"rows": rows}


# -- 4. footprint --------------------------------------------------------------------------------------


def footprint(plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    workload = Workload(markets=MAINNET_MARKETS, batched=False)
    steady = _paced_pipeline(
        workload,
        MAINNET_RATE,
        plan.footprint_seconds,
        scrape_interval=plan.footprint_scrape_interval,
        instrumented=False,
    )
    marks = (plan.soak_updates // 10, plan.soak_updates // 2, plan.soak_updates)
    # Unbatched realistic frames carry one update each, so data frames count updates.
    frames = frames_for_updates(workload, plan.soak_updates)
    with SourceProcess(SourceConfig(workload, frames=frames)) as src:
        spec = ConsumerSpec(src.ws_url, workload, rss_marks=marks)
        soak = _run_consumer(src, "pipeline", spec, timeout=plan.soak_updates / 20_000 + 120.0)
    rss_at = {int(k): v / 1e6 for k, v in soak["rss_marks"].items()}
    log(f"footprint: {steady['cpu_pct']:.2f}% CPU, {steady['rss_mb']:.0f} MB; RSS MB by updates {rss_at}")
    return {
        "rate": MAINNET_RATE,
        "markets": MAINNET_MARKETS,
        "steady": steady,
        "soak": {
            "updates": soak["updates"],
            "updates_per_cpu_s": soak["updates_per_cpu_s"],
            "rss_start_mb": soak["rss_start"] / 1e6,
            "rss_mb_at": rss_at,
            "rss_end_mb": soak["rss_end"] / 1e6,
            "counts_consistent": soak["counts_consistent"],
        },
    }


# -- 5. growth -----------------------------------------------------------------------------------------


def growth(plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    paced = []
    for markets in plan.growth_markets:
        workload = Workload(markets=markets, batched=False)
        for rate in plan.growth_rates:
            row = _paced_pipeline(workload, rate, plan.growth_seconds, scrape_interval=1.0)
            row["rate_target"] = rate
            row["markets"] = markets
            paced.append(row)
            log(
                f"growth {markets} markets @ {rate:,.0f}/s: {row['cpu_pct']:.1f}% CPU,"
                f" p99 {row['latency_us']['p99']:.1f} us"
            )
    blast = []
    for markets in plan.growth_markets:
        workload = Workload(markets=markets, batched=False)
        frames = frames_for_updates(workload, plan.growth_blast_updates)
        with SourceProcess(SourceConfig(workload, frames=frames)) as src:
            run = _run_consumer(src, "pipeline", ConsumerSpec(src.ws_url, workload), timeout=300.0)
        blast.append(
            {
                "markets": markets,
                "updates_per_s": run["updates_per_s"],
                "updates_per_cpu_s": run["updates_per_cpu_s"],
                "cpu_us_per_update": run["cpu_us_per_update"],
                "rss_mb": run["rss_end"] / 1e6,
                "counts_consistent": run["counts_consistent"],
            }
        )
    return {"paced": paced, "blast": blast}


RUNNERS: Final[dict[str, Callable[[Plan, Callable[[str], None]], dict[str, Any]]]] = {
    "ingest": ingest,
    "latency": latency,
    "scrape": scrape,
    "footprint": footprint,
    "growth": growth,
}
