"""Generate grafana/dashboards/*.json from the code in grafana/dashboards_src/.

python -m grafana.build            # rewrite the committed JSON
python -m grafana.build --check    # exit 1 (and name the files) when the committed JSON is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.dashboards_src import internals, market, overview

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"

#: File name → the function that builds it. The file names are what provisioning loads.
SOURCES: dict[str, Callable[[], Dashboard]] = {
    "dydx-feed-overview.json": overview.build,
    "dydx-market-drilldown.json": market.build,
    "dydx-exporter-internals.json": internals.build,
}


def _number_panels(model: dict[str, Any]) -> None:
    """Give every panel (rows included) a stable id in layout order; Grafana needs them unique."""
    next_id = 1
    for panel in model.get("panels", []):
        panel["id"] = next_id
        next_id += 1
        for inner in panel.get("panels", []):
            inner["id"] = next_id
            next_id += 1


def to_model(dashboard: Dashboard) -> dict[str, Any]:
    model: dict[str, Any] = json.loads(json.dumps(dashboard, cls=JSONEncoder))
    _number_panels(model)
    return model


def render(dashboard: Dashboard) -> str:
    return json.dumps(to_model(dashboard), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name → the JSON text the code generates."""
    return {name: render(build()) for name, build in SOURCES.items()}


def stale_files(directory: Path = DASHBOARDS_DIR) -> list[str]:
    """Files that differ from what the code generates, are missing, or are not generated at all."""
    generated = generate()
    stale = [
        name
        for name, text in generated.items()
        if not (directory / name).is_file() or (directory / name).read_text(encoding="utf-8") != text
    ]
    stale += sorted(p.name for p in directory.glob("*.json") if p.name not in generated)
    return stale


def write(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana.build", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed JSON is out of date")
    parser.add_argument("--out", type=Path, default=DASHBOARDS_DIR, help="directory of the dashboard JSON")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.out)
        if stale:
            print(f"out of date in {args.out}: {', '.join(stale)}; run `make dashboards`", file=sys.stderr)
            return 1
        print(f"{len(SOURCES)} dashboards up to date in {args.out}")
        return 0
    for path in write(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
