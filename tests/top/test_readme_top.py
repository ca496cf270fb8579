"""The README's `top` section stays true: its captured frame is what today's layout draws at 80x24, and the
flags it shows exist."""

from __future__ import annotations

import re
from pathlib import Path

from exporter.top.app import build_parser
from tests.top.test_layout import draw, frame

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("## In a terminal: `dydx-exporter top`") :]
SECTION = SECTION[: SECTION.index("\n## ", 1)]


def top_flags() -> set[str]:
    return set(re.findall(r"--[\w.-]+", build_parser().format_help()))


def squeeze(line: str) -> str:
    return " ".join(line.split())


def test_the_captured_frame_is_what_the_layout_draws_at_80x24():
    captured = re.search(r"```text\n(.*?)```", SECTION, re.DOTALL)
    assert captured, "the README's top section has no captured frame"
    lines = captured.group(1).rstrip("\n").splitlines()
    assert len(lines) <= 24 and max(map(len, lines)) <= 80
    assert lines[0].startswith("dydx-exporter") and " top " in lines[0]
    # Titles and column headers are the layout's; numbers differ from run to run.
    drawn = draw(frame(), 80, 24)
    fixed = [line for line in drawn if re.match(r"(channel|market|Throughput) ", line)]
    assert len(fixed) == 3, drawn
    readme = {squeeze(line) for line in lines}
    assert [line for line in fixed if squeeze(line) not in readme] == [], "regenerate the README's frame"
    titles = ("Throughput and latency per channel", "Errors since start", "Markets: top")
    assert all(any(line.startswith(title) for line in lines) for title in titles)


def test_flags_shown_in_the_top_section_exist():
    commands = re.findall(r"dydx-exporter top((?:\\\n|[^\n`])*)", SECTION)
    shown = {flag for command in commands for flag in re.findall(r"--[\w.-]+", command)}
    assert {"--url", "--interval", "--once", "--user", "--password-file", "--tls.ca-file"} <= shown
    known = top_flags()
    assert shown <= known, shown - known
    prose = set(re.findall(r"`(--[\w.-]+)", SECTION))
    assert prose <= known | {"--data.stale-after"}, prose - known  # the exporter's flag it mirrors
