"""The metrics reference table (Markdown) in README.md and docs/metrics.md, generated from the catalog.

`python -m exporter.metrics.docs` (or `python -m exporter.metrics.catalog`) prints it; `--write FILE...`
puts it between the markers of each file (`make docs`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

from exporter.metrics.catalog import CATALOG


def markdown_table() -> str:
    """The metrics reference table (Markdown) for README.md and docs/metrics.md, generated from CATALOG.
    `python -m exporter.metrics.catalog` prints it."""
    rows = ["| Metric | Type | Labels | Meaning |", "| --- | --- | --- | --- |"]
    for spec in CATALOG:
        kind = "info (gauge = 1)" if spec.kind == "info" else spec.kind
        labels = ", ".join(f"`{label}`" for label in spec.labels) or "—"
        rows.append(f"| `{spec.name}` | {kind} | {labels} | {spec.help} |")
    return "\n".join(rows) + "\n"


TABLE_START: Final = "<!-- metrics-table -->"
TABLE_END: Final = "<!-- /metrics-table -->"


def with_table(document: str, table: str) -> str:
    """`document` with whatever stands between the table markers replaced by `table`."""
    head, found, rest = document.partition(TABLE_START)
    _, found_end, tail = rest.partition(TABLE_END)
    if not (found and found_end):
        raise ValueError(f"no {TABLE_START} ... {TABLE_END} markers")
    return f"{head}{TABLE_START}\n{table}{TABLE_END}{tail}"


def main(argv: list[str]) -> int:
    """`python -m exporter.metrics.catalog` prints the table; `--write FILE...` puts it between the
    markers of each file (README.md, docs/metrics.md: `make docs`)."""
    if not argv:
        print(markdown_table(), end="")
        return 0
    if argv[0] != "--write" or len(argv) < 2:
        print("usage: python -m exporter.metrics.catalog [--write FILE...]", file=sys.stderr)
        return 2
    table = markdown_table()
    for name in argv[1:]:
        path = Path(name)
        try:
            path.write_text(with_table(path.read_text(encoding="utf-8"), table), encoding="utf-8")
        except (OSError, ValueError) as error:
            print(f"{name}: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
