"""Runs a set of scenarios and writes one JSON document for the run (the API the smoke test uses)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from bench.report import machine, render
from bench.scenarios import RUNNERS, Plan

RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"


def run(
    scenarios: Sequence[str],
    quick: bool = False,
    repeat: int | None = None,
    results_dir: Path = RESULTS_DIR,
    log: Callable[[str], None] = lambda line: None,
) -> tuple[dict[str, Any], Path, str]:
    """Run `scenarios` in order; return (results, path of the JSON written, the rendered tables)."""
    plan = Plan.quick() if quick else Plan.full()
    if repeat is not None:
        plan = dataclasses.replace(plan, repeat=max(1, repeat))
    started = time.time()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "quick": quick,
        "plan": dataclasses.asdict(plan),
        "machine": machine(),
        "scenarios": list(scenarios),
    }
    for name in scenarios:
        t0 = time.monotonic()
        log(f"{name}: running")
        results[name] = RUNNERS[name](plan, log)
        results[name]["elapsed_s"] = time.monotonic() - t0
    results["elapsed_s"] = time.time() - started
    results["machine"]["loadavg_end"] = machine()["loadavg"]
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
    path = results_dir / f"bench-{stamp}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results, path, render(results)
