"""The committed dashboard JSON is exactly what the code generates, under stable uids and file names."""

from __future__ import annotations

import json
from pathlib import Path

from exporter.protocol.channels import MARKET_STATUSES
from grafana import build
from grafana.blocks import ALL_DASHBOARDS
from grafana.dashboards_src.overview import MARKET_STATUS_STATES

#: Links, bookmarks and alert annotations point at these: changing one breaks them silently.
STABLE_UIDS = {
    "dydx-feed-overview.json": "dydx-feed-overview",
    "dydx-market-drilldown.json": "dydx-market-drilldown",
    "dydx-exporter-internals.json": "dydx-exporter-internals",
}


def test_committed_json_is_what_the_code_generates():
    assert build.stale_files() == [], "run `make dashboards` (python -m grafana.build) and commit the result"


def test_uids_and_file_names_are_stable():
    found = {
        path.name: json.loads(path.read_text(encoding="utf-8"))["uid"]
        for path in sorted(build.DASHBOARDS_DIR.glob("*.json"))
    }
    assert found == STABLE_UIDS
    assert {ref.uid for ref in ALL_DASHBOARDS} == set(STABLE_UIDS.values())


def test_the_market_status_timeline_names_every_status_of_the_protocol_once():
    """A status the timeline does not map would be drawn as a bare number in no legend colour."""
    assert tuple(MARKET_STATUS_STATES) == MARKET_STATUSES
    numbers = [number for number, _ in MARKET_STATUS_STATES.values()]
    assert len(set(numbers)) == len(numbers)


def test_generation_is_deterministic():
    assert build.generate() == build.generate()


def test_check_mode_fails_on_drift_and_passes_once_regenerated(tmp_path: Path, capsys):
    assert build.main(["--out", str(tmp_path)]) == 0
    assert build.main(["--check", "--out", str(tmp_path)]) == 0

    edited = tmp_path / "dydx-feed-overview.json"
    edited.write_text(edited.read_text(encoding="utf-8").replace("Throughput", "Thruput"), encoding="utf-8")
    (tmp_path / "hand-made.json").write_text("{}", encoding="utf-8")
    assert build.main(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "dydx-feed-overview.json" in err and "hand-made.json" in err

    (tmp_path / "hand-made.json").unlink()
    assert build.main(["--out", str(tmp_path)]) == 0
    assert build.main(["--check", "--out", str(tmp_path)]) == 0
