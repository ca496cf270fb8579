"""Regenerates what the Helm chart takes from the rest of the repo (`make helm`); never edit those by hand.

- `files/rules/*.yml`: copies of `prometheus/rules/*.yml`, which the PrometheusRule template renders;
- `files/dashboards/*.json`: copies of `grafana/dashboards/*.json`, one ConfigMap each;
- `values.schema.json` → `properties.config.properties`: one entry per exporter option of the option table
  (`exporter.config.OPTIONS`) except those the chart sets itself (CHART_SET), so a misspelt option fails
  at install and a new option is reachable as soon as this runs.

`python -m deploy.helm.generate --check` writes nothing and exits 1 naming what is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exporter.config import OPTIONS

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "dydx-exporter"
SCHEMA = CHART / "values.schema.json"
#: chart directory → (source directory, file pattern)
COPIES: Mapping[str, tuple[Path, str]] = {
    "files/rules": (REPO / "prometheus" / "rules", "*.yml"),
    "files/dashboards": (REPO / "grafana" / "dashboards", "*.json"),
}
#: Exporter flags the chart sets from its own values (flag → the values key that drives it), so they are
#: not keys of `config`.
CHART_SET: Mapping[str, str] = {
    "config.file": "config",
    "web.listen-address": "port",
    "web.config.file": "webConfig",
    "shard": "shards",
}


def option_schema() -> dict[str, Any]:
    """`properties` of values.config: every option of the table but CHART_SET, typed loosely (the exporter
    checks values and names the bad one at start); null unsets an option (the exporter's default)."""
    properties: dict[str, Any] = {}
    for option in OPTIONS:
        if option.flag in CHART_SET:
            continue
        default = "" if option.default in ("", None) else f" (default {option.default})"
        entry: dict[str, Any] = {"description": f"--{option.flag}: {option.help}{default}"}
        if option.is_bool:
            entry["type"] = ["boolean", "null"]
        else:
            entry["type"] = ["string", "number", "array", "null"]
            entry["items"] = {"type": "string"}
        properties[option.flag] = entry
    return properties


def expected() -> dict[Path, str]:
    """Every generated file's path and content."""
    out: dict[Path, str] = {}
    for target, (source, pattern) in COPIES.items():
        for path in sorted(source.glob(pattern)):
            out[CHART / target / path.name] = path.read_text(encoding="utf-8")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    schema["properties"]["config"]["properties"] = option_schema()
    out[SCHEMA] = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    return out


def _orphans(want: Mapping[Path, str]) -> list[Path]:
    """Generated copies whose source is gone."""
    return [
        path
        for target, (_, pattern) in COPIES.items()
        for path in (CHART / target).glob(pattern)
        if path not in want
    ]


def stale() -> list[str]:
    """Generated files that differ from what `expected` gives, or that no source produces any more."""
    want = expected()
    problems = [
        str(path.relative_to(REPO))
        for path, text in want.items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]
    return problems + [f"{path.relative_to(REPO)} (no source)" for path in _orphans(want)]


def write() -> list[str]:
    """Brings every generated file up to date; returns what changed."""
    want = expected()
    changed = []
    for path in _orphans(want):
        path.unlink()
        changed.append(f"{path.relative_to(REPO)} (removed)")
    for path, text in want.items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(str(path.relative_to(REPO)))
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.helm.generate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything is stale")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for problem in problems:
            print(f"stale: {problem} (run `make helm`)", file=sys.stderr)
        return 1 if problems else 0
    for changed in write():
        print(f"updated {changed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
