"""`dydx-exporter simulate --replay FILE` as a real process serving the shipped capture."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from exporter.protocol import channels as ch
from exporter.simulator.cli import main, parse_args, source_from_args
from exporter.simulator.replay import ReplaySource
from tests.capture.expect import SHIPPED, RecordingPublisher, first_snapshots, recorded_updates
from tests.fixtures.simulator import simulator_ws_url, start_simulator_process
from tests.helpers import LoggedProcess, kill_if_running, wait_for
from tests.simulator.probe import Probe

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def simulate() -> AsyncIterator[LoggedProcess]:
    process = await start_simulator_process("--replay", str(SHIPPED), "--speed", "max", "--paused")
    try:
        yield process
    finally:
        await process.close()


@pytest.mark.timeout(60)
async def test_simulate_replay_serves_the_capture(simulate: LoggedProcess) -> None:
    ws_url = await simulator_ws_url(simulate)
    base_url = ws_url.replace("ws://", "http://").removesuffix("/v4/ws")
    expected = recorded_updates(SHIPPED)
    keys = [(ch.TRADES, "BTC-USD"), (ch.ORDERBOOK, "ETH-USD"), (ch.BLOCK_HEIGHT, ch.BLOCK_HEIGHT_ID)]
    probe = await Probe.open(ws_url)
    try:
        for channel, key in keys:
            await probe.subscribe(channel, None if channel == ch.BLOCK_HEIGHT else key)
        await wait_for(lambda: len(probe.of_type(ch.T_SUBSCRIBED)) == len(keys), timeout=10)
        snapshots = first_snapshots(SHIPPED)
        for frame in probe.of_type(ch.T_SUBSCRIBED):
            assert frame["contents"] == snapshots[(frame["channel"], frame["id"])]
        async with aiohttp.ClientSession() as http, http.post(base_url + "/control/resume") as resp:
            assert resp.status == 200

        def got() -> dict[tuple[str, str | None], list[object]]:
            out: dict[tuple[str, str | None], list[object]] = {}
            for f in probe.of_type(ch.T_CHANNEL_DATA):
                out.setdefault((f["channel"], f["id"]), []).append(f["contents"])
            return out

        want = {key: expected[key] for key in keys}
        await wait_for(lambda: got() == want, timeout=20, message="replayed updates")
        loaded = [e for e in simulate.events if e.get("event") == "replay_loaded"]
        assert len(loaded) == 1 and loaded[0]["speed"] == 0.0 and loaded[0]["retime"] is False
        finished = await simulate.wait_event("replay_finished")
        assert finished["published"] == sum(len(v) for v in expected.values())
    finally:
        await probe.close()
    assert await simulate.stop() == 0


@pytest.mark.timeout(30)
async def test_simulate_refuses_what_is_not_a_capture(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "simulate", "--replay", str(bogus),
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        await kill_if_running(proc)
    assert proc.returncode == 2
    assert f"{bogus}: not a gzip-compressed capture" in stderr.decode()


@pytest.mark.parametrize(
    ("flags", "speed", "loop", "retime"),
    [
        ([], 1.0, False, False),
        (["--speed", "max", "--replay.loop", "--replay.retime"], 0.0, True, True),
        (["--speed", "2.5"], 2.5, False, False),
    ],
)
def test_simulate_replay_flags_reach_the_source(
    flags: list[str], speed: float, loop: bool, retime: bool
) -> None:
    factory = source_from_args(parse_args(["--replay", str(SHIPPED), *flags]))
    assert factory is not None
    source = factory(RecordingPublisher())
    assert isinstance(source, ReplaySource)
    assert (source.speed, source.loop, source.retime) == (speed, loop, retime)


def test_simulate_refuses_a_bad_speed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--replay", str(SHIPPED), "--speed", "fast"]) == 2
    assert "error: --speed: expected a number >= 0, not 'fast'" in capsys.readouterr().err
