"""`python -m scripts.capacity` (the command behind docs/scaling.md's figures) still runs end to end: a
smoke-sized run (two small market counts and a sharded one, two seconds each), about 15 s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.capacity import amain, parse_args

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_capacity_command_measures_and_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "capacity.json"
    argv = ["--markets=4,8", "--shard-run=8:1/2", "--seconds=2", "--warmup=0", "--scrape-interval=1"]
    assert await amain(parse_args([*argv, f"--json={out}"])) == 0
    doc = json.loads(out.read_text())
    runs = {(r["markets"], r["shard"]): r for r in doc["runs"]}
    assert set(runs) == {(4, "0/1"), (8, "0/1"), (8, "1/2")}
    assert runs[(8, "1/2")]["exported"] < 8 and runs[(8, "0/1")]["exported"] == 8
    for run in runs.values():
        assert run["series"] > run["market_series"] > 0 and run["rss_mib"] > 10
    # Each exported market adds about two dozen series (a few appear only with its first trade).
    assert 15 < doc["series_per_market"] < 40
    assert doc["target"]["series_per_exporter"] == doc["series_fixed"] + 250 * doc["series_per_market"]
    assert "1,000 markets in 4 shards" in capsys.readouterr().out
