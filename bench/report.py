"""Tables for the terminal (and BENCHMARKS.md), the machine description, and the targets of issue 7."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_total = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_total = int(line.split()[1]) * 1024
    except OSError:
        pass
    versions = {}
    for dist in ("aiohttp", "orjson", "prometheus-client", "websockets"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gb": round(mem_total / 2**30, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "packages": versions,
        "loadavg": os.getloadavg(),
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (also readable in a terminal)."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if value != value:
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _rss_at(soak: Mapping[str, Any]) -> dict[int, float]:
    """RSS by update count (JSON turns the int keys into strings)."""
    return {int(k): float(v) for k, v in soak["rss_mb_at"].items()}


def _wall_and_cpu(wall_ms: float, cpu_ms: float) -> str:
    return f"{wall_ms:.1f} / {cpu_ms:.2f}"


def targets(results: Mapping[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for every target of issue 7 that this run measured."""
    out: list[tuple[str, str, bool | None]] = []
    ingest = results.get("ingest")
    if ingest:
        for label, w in ingest["workloads"].items():
            if label == "one-trade frames":
                continue
            r = w["ratios"]
            out.append(
                (
                    f"exporter ≥ 0.5 x bare ({label})",
                    f"{r['exporter_vs_bare_cpu']:.2f}",
                    r["exporter_vs_bare_cpu"] >= 0.5,
                )
            )
            out.append(
                (
                    f"exporter ≥ 2.5 x naive ({label})",
                    f"{r['exporter_vs_naive_cpu']:.2f}",
                    r["exporter_vs_naive_cpu"] >= 2.5,
                )
            )
            need = 300_000 if "batched" in label and "unbatched" not in label else 200_000
            got = w["exporter"]["updates_per_cpu_s"]
            out.append((f"≥ {need:,} updates/s on one core ({label})", f"{got:,.0f}", got >= need))
    latency = results.get("latency")
    if latency:
        ws = latency["with_scrapes"]
        p99 = ws["latency_us"]["p99"]
        out.append(("p99 processing < 50 µs at 10k/s (267 markets, scraped 1/s)", f"{p99:.1f} µs", p99 < 50))
        lag = ws["loop_lag_ms"]
        stall = lag["max_on_cpu_during_scrape"]
        out.append(
            (
                "no scrape stalls the loop > 5 ms (ticker: on-CPU, wall in brackets)",
                f"{stall:.2f} ms ({lag['max_during_scrape']:.1f} ms),"
                f" median scrape {lag['median_scrape_max_on_cpu']:.2f} ms",
                stall <= 5.0,
            )
        )
        scrape_steps = ws.get("slow_callbacks", {}).get("during_scrapes", [])
        handler = [r for r in scrape_steps if "_handle_request" in r["callback"]]
        if handler:
            longest = handler[0]
            out.append(
                (
                    "longest single loop callback of a scrape < 5 ms (on-CPU, wall in brackets)",
                    f"{longest['max_cpu_ms']:.2f} ms ({longest['max_wall_ms']:.2f} ms)",
                    longest["max_cpu_ms"] <= 5.0,
                )
            )
    footprint = results.get("footprint")
    if footprint:
        steady = footprint["steady"]
        out.append(
            (
                f"< 5% of a core at {footprint['rate']:,.0f}/s over {footprint['markets']} markets",
                f"{steady['cpu_pct']:.2f}%",
                steady["cpu_pct"] < 5,
            )
        )
        out.append(("< 150 MB RSS at that rate", f"{steady['rss_mb']:.0f} MB", steady["rss_mb"] < 150))
        at = _rss_at(footprint["soak"])
        if len(at) >= 2:
            first, last = min(at), max(at)
            grew = at[last] - at[first]
            out.append(
                (
                    f"RSS flat from {first:,} to {last:,} updates (< 5 MB growth)",
                    f"{at[first]:.0f} → {at[last]:.0f} MB",
                    grew < 5,
                )
            )
    return out


def render(results: Mapping[str, Any]) -> str:
    parts: list[str] = []
    m = results["machine"]
    parts.append(
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Linux {m['kernel']},"
        f" Python {m['python']}, load average at start {m['loadavg'][0]:.2f}"
    )
    ingest = results.get("ingest")
    if ingest:
        parts.append(f"\n### Ingest ({ingest['markets']} markets, one connection, best of N)\n")
        rows = []
        for label, w in ingest["workloads"].items():
            for kind in ("null", "bare", "naive", "pipeline", "exporter"):
                if kind not in w:
                    continue
                r = w[kind]
                if kind == "null":
                    rows.append([label, "source (null consumer)", r["updates_per_s"], None, None, None, None])
                    continue
                rows.append(
                    [
                        label,
                        kind,
                        r["updates_per_s"],
                        r["updates_per_cpu_s"],
                        r["cpu_us_per_update"],
                        f"±{r['noise_cpu_pct']:.0f}% ({r['runs']})",
                        r["counts_consistent"],
                    ]
                )
            ratios = w["ratios"]
            rows.append(
                [
                    label,
                    "ratios (CPU)",
                    f"exporter/bare {ratios.get('exporter_vs_bare_cpu', float('nan')):.2f}",
                    f"exporter/naive {ratios.get('exporter_vs_naive_cpu', float('nan')):.2f}",
                    f"{w['updates_per_frame']:.2f} upd/frame",
                    f"{w['frame_bytes_avg']:.0f} B/frame",
                    None,
                ]
            )
        parts.append(
            table(
                ["workload", "consumer", "updates/s", "updates/CPU-s", "CPU µs/update", "noise", "counts ok"],
                rows,
            )
        )
        for label, w in ingest["workloads"].items():
            for kind in ("pipeline", "exporter"):
                problems = w.get(kind, {}).get("pipeline_problems")
                if problems:
                    parts.append(
                        f"\n**{label}, {kind}: differs from what the source sent:** {'; '.join(problems)}"
                    )
    latency = results.get("latency")
    if latency:
        rate, markets = latency["rate"], latency["markets"]
        parts.append(f"\n### Latency ({rate:,.0f} updates/s, {markets} markets, unbatched)\n")
        rows = []
        for label, key in (("scraped every 1 s", "with_scrapes"), ("no scrapes", "no_scrapes")):
            r = latency[key]
            lat, lag, scr = r["latency_us"], r["loop_lag_ms"], r["scrapes"]
            rows.append(
                [
                    label,
                    lat["p50"],
                    lat["p99"],
                    lat["p99.9"],
                    lat["max"],
                    f"{lag['max_during_scrape']:.1f} / {lag['max_on_cpu_during_scrape']:.2f}",
                    f"{lag['max_outside_scrapes']:.1f} / {lag['max_on_cpu_outside_scrapes']:.2f}",
                    scr["count"],
                    scr["duration_ms_p50"],
                    scr["duration_ms_max"],
                    scr["wire_bytes"],
                ]
            )
        parts.append(
            table(
                [
                    "run",
                    "p50 µs",
                    "p99 µs",
                    "p99.9 µs",
                    "max µs",
                    "stall in a scrape ms (wall / on-CPU)",
                    "stall outside scrapes ms (wall / on-CPU)",
                    "scrapes",
                    "scrape p50 ms",
                    "scrape max ms",
                    "scrape bytes (gzip)",
                ],
                rows,
            )
        )
    scrape = results.get("scrape")
    if scrape:
        parts.append("\n### Scrape (full catalog)\n")
        rows = [
            [
                r["markets"],
                r["samples"],
                r["text_bytes"],
                r["gzip_bytes"],
                r.get("render_async_ms"),
                r.get("render_async_longest_slice_ms"),
                r["generate_latest_ms"],
                r["http_plain_ms"],
                r["http_gzip_openmetrics_ms"],
                f"{r['loop_lag_max_ms']:.1f} / {r['loop_lag_max_on_cpu_ms']:.2f}",
            ]
            for r in scrape["rows"]
        ]
        parts.append(
            table(
                [
                    "markets",
                    "samples",
                    "text bytes",
                    "gzip bytes",
                    "render ms",
                    "longest slice ms",
                    "generate_latest ms",
                    "GET plain ms",
                    "GET gzip+OM ms",
                    "loop stall ms (wall / on-CPU)",
                ],
                rows,
            )
        )
    footprint = results.get("footprint")
    if footprint:
        s, soak = footprint["steady"], footprint["soak"]
        rate, markets = footprint["rate"], footprint["markets"]
        parts.append(f"\n### Footprint ({rate:,.0f} updates/s, {markets} markets)\n")
        rows = [
            ["steady", f"{s['seconds']:.0f} s", s["cpu_pct"], s["cpu_us_per_update"], s["rss_mb"]],
            *[[f"after {k:,} updates", "blast", None, None, v] for k, v in sorted(_rss_at(soak).items())],
        ]
        parts.append(table(["phase", "duration", "CPU % of a core", "CPU µs/update", "RSS MB"], rows))
    growth = results.get("growth")
    if growth:
        parts.append("\n### Growth (paced, scraped every 1 s, unbatched)\n")
        rows = [
            [
                r["markets"],
                r["rate_target"],
                r["rate_achieved"],
                r["cpu_pct"],
                r["cpu_us_per_update"],
                r["latency_us"]["p50"],
                r["latency_us"]["p99"],
                _wall_and_cpu(
                    r["loop_lag_ms"]["max_during_scrape"], r["loop_lag_ms"]["max_on_cpu_during_scrape"]
                ),
                r["scrapes"]["duration_ms_max"],
                r["rss_mb"],
            ]
            for r in growth["paced"]
        ]
        parts.append(
            table(
                [
                    "markets",
                    "rate",
                    "achieved",
                    "CPU %",
                    "CPU µs/upd",
                    "p50 µs",
                    "p99 µs",
                    "scrape stall ms (wall / on-CPU)",
                    "scrape ms",
                    "RSS MB",
                ],
                rows,
            )
        )
        parts.append("")
        rows = [
            [r["markets"], r["updates_per_s"], r["updates_per_cpu_s"], r["cpu_us_per_update"], r["rss_mb"]]
            for r in growth["blast"]
        ]
        parts.append(
            table(["markets (ingest, flat out)", "updates/s", "updates/CPU-s", "CPU µs/upd", "RSS MB"], rows)
        )
    checks = targets(results)
    if checks:
        parts.append("\n### Targets (issue 7)\n")
        parts.append(
            table(["target", "measured", "met"], [[t, v, "yes" if ok else "NO"] for t, v, ok in checks])
        )
    return "\n".join(parts)
