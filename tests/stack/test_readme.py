"""The README stays true to the code: its configuration table, the flags it shows, and its links."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.config import OPTIONS

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def help_text(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args, "--help"], cwd=REPO, capture_output=True, text=True, timeout=30, check=True
    )
    return result.stdout


def test_first_screen_keeps_the_two_commands():
    first_screen = "\n".join(README.splitlines()[:15])
    assert "make demo   # simulator + exporter + Prometheus + Alertmanager on loopback" in first_screen
    assert "make test   # lint, type-check and the whole suite" in first_screen
    assert README.count("<!-- metrics-table -->") == 1 and README.count("<!-- /metrics-table -->") == 1


def test_configuration_table_lists_every_option_with_its_env_and_default():
    rows = {
        m.group(1): (m.group(2), m.group(3), m.group(4))
        for m in re.finditer(
            r"^\| `--([\w.-]+)` \| `?([A-Z_]*)`? \| ([^|]*) \| (.*) \|$", README, re.MULTILINE
        )
    }
    for option in OPTIONS:
        assert option.flag in rows, f"--{option.flag} missing from the README's configuration table"
        env, default, what = rows[option.flag]
        assert env == option.env
        # The help text as users read it (an argparse `%%` escape once leaked into this column).
        assert what.startswith(option.help), f"--{option.flag}: README says {what!r}, help {option.help!r}"
        if option.default not in ("", None):
            shown = str(option.default).lower() if isinstance(option.default, bool) else str(option.default)
            assert f"`{shown}`" in default, f"--{option.flag}: README says {default.strip()}, code {shown}"
    documented = set(rows) - {"version"}
    assert documented <= {o.flag for o in OPTIONS}, documented - {o.flag for o in OPTIONS}


@pytest.mark.parametrize(
    ("command", "pattern"),
    [
        (("-m", "exporter", "simulate"), r"dydx-exporter simulate ([^\n`]*)"),
        (("-m", "exporter", "record"), r"dydx-exporter record ([^\n`]*)"),
        (("-m", "scripts.demo"), r"(--(?:simulator|exporter|prometheus|alertmanager|grafana|webhook)-port)"),
    ],
)
def test_flags_shown_in_the_readme_exist(command, pattern):
    known = set(re.findall(r"--[\w.-]+", help_text(*command))) | {"--help"}
    shown = {flag for m in re.finditer(pattern, README) for flag in re.findall(r"--[\w.-]+", m.group(1))}
    assert shown, f"the README shows no flags for {command}"
    assert shown <= known, f"{' '.join(command)}: README shows {sorted(shown - known)}, which do not exist"


def test_demo_options_in_the_readme_exist():
    section = README[README.index("Demo options") : README.index("### With Docker Compose")]
    known = set(re.findall(r"--[\w.-]+", help_text("-m", "scripts.demo")))
    shown = set(re.findall(r"`(--[\w.-]+)", section))
    assert shown and shown <= known, shown - known


def test_every_relative_link_resolves():
    links = re.findall(r"\]\((?!https?://|#)([^)\s]+)\)", README)
    assert links
    missing = [link for link in links if not (REPO / link.split("#")[0]).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_documented_dashboards_exist():
    for title in ("dYdX feed overview", "dYdX market drilldown", "dYdX exporter internals"):
        assert title in README
        assert any(title in path.read_text() for path in (REPO / "grafana" / "dashboards").glob("*.json"))


def _repo_files() -> set[Path]:
    files: set[Path] = set()
    for root, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("node_modules", "__pycache__")]
        files.update(Path(root, name).relative_to(REPO) for name in names)
    return files


def test_every_file_the_readme_names_is_in_the_repository():
    """A name in backticks is a promise the reader can open it (the README once cited a file the repo
    does not have). Bare names may live in a folder the sentence names, so any path ending in them counts."""
    named = set(re.findall(r"`([\w./-]+\.(?:md|yml|yaml|py|sh|json|toml))`", README))
    assert named
    files = _repo_files()
    missing = [
        name
        for name in sorted(named)
        if not any(f == Path(name) or f.as_posix().endswith("/" + name) for f in files)
    ]
    assert not missing, f"the README names files the repository does not have: {missing}"
