"""`dydx-exporter simulate --replay FILE` as a real process serving the shipped capture."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from exporter.protocol import channels as ch
from tests.capture.expect import SHIPPED, first_snapshots, recorded_updates
from tests.helpers import wait_for
from tests.simulator.probe import Probe

REPO = Path(__file__).resolve().parents[2]


class SimulateProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, object]] = []
        self._drain = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            try:
                self.events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                self.events.append({"event": "text", "line": line.decode(errors="replace")})

    async def ws_url(self) -> str:
        started = await wait_for(
            lambda: [e for e in self.events if e.get("event") == "simulator_started"], timeout=20
        )
        return str(started[0]["url"])

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.terminate()
        try:
            code = await asyncio.wait_for(self.proc.wait(), 10)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
            await asyncio.gather(self._drain, return_exceptions=True)
        return code


@pytest.fixture
async def simulate() -> AsyncIterator[SimulateProcess]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "simulate", "--web.listen-address", "127.0.0.1:0",
        "--replay", str(SHIPPED), "--speed", "0", "--paused", "--log.format", "json",
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    process = SimulateProcess(proc)
    try:
        yield process
    finally:
        await process.stop()


@pytest.mark.timeout(60)
async def test_simulate_replay_serves_the_capture(simulate: SimulateProcess) -> None:
    ws_url = await simulate.ws_url()
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
        finished = await wait_for(lambda: [e for e in simulate.events if e.get("event") == "replay_finished"])
        assert finished[0]["published"] == sum(len(v) for v in expected.values())
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
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 2
    assert f"{bogus}: not a gzip-compressed capture" in stderr.decode()
