"""The metrics reference table documents every metric the Collector exposes.

It checks README.md once README carries the marker line `<!-- metrics-table -->` (the table follows it, up
to `<!-- /metrics-table -->` when present), and docs/metrics.md always. Regenerate both tables with
`make docs` (python -m exporter.metrics.catalog --write README.md docs/metrics.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics import catalog, docs
from tests.state.pipeline_frames import Pipeline

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- metrics-table -->"
END_MARKER = "<!-- /metrics-table -->"
ROW = re.compile(r"^\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|", re.MULTILINE)


def documented(path: Path, *, after_marker: bool) -> set[str]:
    text = path.read_text(encoding="utf-8")
    if after_marker:
        text = text.split(MARKER, 1)[1].split(END_MARKER, 1)[0]
    return set(ROW.findall(text))


def exposed() -> set[str]:
    """Every dydx_* family name the Collector renders, plus every catalog entry (some render no sample until
    data arrives, but they are registered all the same)."""
    pipe = Pipeline()
    names = {spec.name for spec in catalog.CATALOG}
    for family in text_string_to_metric_families(pipe.collector.render_text()):
        if family.name.startswith("dydx_"):
            # The text parser strips `_total` from counter families; the table uses the sample name.
            names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


def documents() -> list[Path]:
    paths = [ROOT / "docs" / "metrics.md"]
    readme = ROOT / "README.md"
    if readme.exists() and MARKER in readme.read_text(encoding="utf-8").splitlines():
        paths.append(readme)
    return paths


@pytest.mark.parametrize("path", documents(), ids=lambda p: p.name)
def test_every_exposed_metric_is_in_the_table(path: Path) -> None:
    missing = exposed() - documented(path, after_marker=path.name == "README.md")
    assert not missing, f"{path.name} lacks rows for: {', '.join(sorted(missing))}"


def test_the_table_lists_no_metric_that_does_not_exist() -> None:
    stale = documented(ROOT / "docs" / "metrics.md", after_marker=False) - exposed()
    assert not stale, f"docs/metrics.md documents metrics that are not exposed: {', '.join(sorted(stale))}"


def test_docs_table_is_the_generated_one() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert docs.markdown_table() in text, "regenerate docs/metrics.md with python -m exporter.metrics.catalog"
