"""`python -m bench` (= `make bench`): run the scenarios, print the tables, write bench/results/*.json."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.report import render
from bench.runner import RESULTS_DIR, run
from bench.scenarios import SCENARIOS


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke-sized run (seconds, not minutes)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIOS,
        help="run only this scenario (repeatable); default: all",
    )
    parser.add_argument("--repeat", type=int, default=None, help="repeats per ingest measurement (best of N)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="print the tables of an earlier run and exit"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        print(render(json.loads(args.render.read_text())))
        return 0
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {line}", file=sys.stderr, flush=True)

    _, path, text = run(
        scenarios=args.scenario or SCENARIOS,
        quick=args.quick,
        repeat=args.repeat,
        results_dir=args.results_dir,
        log=log,
    )
    print(text)
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
