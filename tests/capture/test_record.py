"""`dydx-exporter record` against a real simulator on loopback: what it writes, that it loses nothing,
that it shards like the exporter, and that it stops cleanly on a deadline or a signal."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from exporter.config import NETWORKS, OPTIONS, Settings
from exporter.protocol import channels as ch
from exporter.simulator.capture import FrameRecord, LinkEvent, Trailer, read_header, read_records
from exporter.simulator.recorder import (
    EXPORTER_FLAGS,
    build_record_parser,
    record_config_from_argv,
    record_main,
)
from exporter.simulator.server import Simulator
from tests.capture.expect import frames
from tests.data.make_capture import record_simulator
from tests.fixtures.simulator import SimulatorFactory
from tests.helpers import kill_if_running, wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
async def test_recorder_loses_nothing_and_respects_the_per_connection_cap(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    sim = await simulator_factory(markets=40, block_time=0.1, paused=True)
    tickers = tuple(sim.source.tickers())
    recorded = await record_simulator(sim, tmp_path / "cap.jsonl.gz", seconds=1.0, markets=tickers)

    records = list(read_records(recorded.path))
    assert isinstance(records[-1], Trailer) and records[-1].frames == recorded.frames
    recorded_frames = frames(recorded.path)
    # 40 markets need two connections per per-market channel (at most 32 subscriptions each).
    per_connection: dict[str, Counter[str]] = {}
    ids: dict[str, set[int]] = {}
    for frame in recorded_frames:
        ids.setdefault(frame["connection_id"], set()).add(frame["message_id"])
        if frame["type"] == ch.T_SUBSCRIBED:
            per_connection.setdefault(frame["connection_id"], Counter())[frame["channel"]] += 1
    assert len(per_connection) == 2
    for counts in per_connection.values():
        assert all(n <= ch.SUBSCRIPTION_CAPS[c] for c, n in counts.items())
    assert sum(c[ch.ORDERBOOK] for c in per_connection.values()) == 40
    assert {r.link for r in records if isinstance(r, FrameRecord)} == {"conn-0", "conn-1"}
    assert [r.event for r in records if isinstance(r, LinkEvent)][:2] == ["opened", "opened"]
    # Every message id of every connection, from `connected` on: not one frame dropped.
    for seen in ids.values():
        assert seen == set(range(max(seen) + 1))
    # And every trade the simulator published while recording is in the file.
    trades = Counter[str]()
    for frame in recorded_frames:
        if frame["type"] == ch.T_CHANNEL_DATA and frame["channel"] == ch.TRADES:
            trades[frame["id"]] += len(frame["contents"]["trades"])
    assert trades == Counter(recorded.truth["trades_published"]) and sum(trades.values()) > 0


async def run_record(
    *args: str, stop_when: asyncio.Event | None = None, timeout: float = 30.0
) -> tuple[int, str]:
    """`python -m exporter record ARGS` as a real process; SIGTERM once `stop_when` is set."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exporter",
        "record",
        *args,
        "--log.format",
        "json",
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        if stop_when is not None:
            await asyncio.wait_for(stop_when.wait(), timeout)
            proc.send_signal(signal.SIGTERM)
        assert proc.stderr is not None
        stderr = await asyncio.wait_for(proc.stderr.read(), timeout)
        code = await asyncio.wait_for(proc.wait(), timeout)
        return code, stderr.decode()
    finally:
        await kill_if_running(proc)


@pytest.mark.timeout(60)
async def test_record_cli_discovers_all_markets_and_stops_after_duration(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    sim = await simulator_factory(markets=3, block_time=0.1)
    output = tmp_path / "all.jsonl.gz"
    code, stderr = await run_record(
        "--output", str(output), "--dydx.ws-url", sim.ws_url, "--channels", "v4_trades,v4_block_height",
        "--duration", "1500ms",
    )  # fmt: skip
    assert code == 0, stderr
    assert '"event": "record_finished"' in stderr
    header = read_header(output)
    assert header["source"] == sim.ws_url and header["rest"] == sim.base_url and header["markets"] == "all"
    assert header["channels"] == [ch.TRADES, ch.BLOCK_HEIGHT]
    subscribed = {(f["channel"], f.get("id")) for f in frames(output) if f["type"] == ch.T_SUBSCRIBED}
    assert subscribed == {(ch.TRADES, t) for t in sim.source.tickers()} | {
        (ch.BLOCK_HEIGHT, ch.BLOCK_HEIGHT_ID)
    }
    assert isinstance(list(read_records(output))[-1], Trailer)


def _subscribed(sim: Simulator, channel: str, count: int) -> bool:
    return sim.hub.counts().get(channel, 0) >= count


@pytest.mark.timeout(60)
async def test_record_cli_closes_the_file_cleanly_on_sigterm(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    sim = await simulator_factory(markets=2, block_time=0.1)
    output = tmp_path / "sig.jsonl.gz"
    subscribed = asyncio.Event()

    async def watch() -> None:
        await wait_for(lambda: _subscribed(sim, ch.ORDERBOOK, 2), timeout=20)
        await wait_for(lambda: sim.stats.frames[(ch.ORDERBOOK, ch.T_CHANNEL_DATA)] > 20, timeout=20)
        subscribed.set()

    watcher = asyncio.create_task(watch())
    try:
        code, stderr = await run_record(
            "--output", str(output), "--dydx.ws-url", sim.ws_url, "--markets", "BTC-USD,ETH-USD",
            "--channels", "v4_orderbook", stop_when=subscribed,
        )  # fmt: skip
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    assert code == 0, stderr
    records = list(read_records(output))
    trailer = records[-1]
    assert isinstance(trailer, Trailer)
    data = [r for r in records if isinstance(r, FrameRecord) and b'"channel_data"' in r.raw[:25]]
    assert trailer.frames == sum(isinstance(r, FrameRecord) for r in records) and len(data) > 20
    # The recorder said goodbye: its connection is gone from the simulator.
    await wait_for(lambda: not sim.sessions, timeout=5, message="recorder connection closed")


@pytest.mark.timeout(30)
async def test_record_cli_exits_1_when_nothing_can_be_recorded(tmp_path: Path) -> None:
    code, stderr = await run_record(
        "--output", str(tmp_path / "none.jsonl.gz"), "--dydx.ws-url", "ws://127.0.0.1:9/v4/ws",
        "--markets", "BTC-USD", "--duration", "0.5",
    )  # fmt: skip
    assert code == 1 and "nothing was received from ws://127.0.0.1:9/v4/ws" in stderr
    code, stderr = await run_record(
        "--output", str(tmp_path / "no" / "such" / "dir.gz"), "--markets", "BTC-USD", "--duration", "0.5"
    )
    assert code == 1 and "cannot write" in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--output: the capture file to write is required"),
        (["-o", "x.gz", "--markets", "btc"], "--markets: btc is not a ticker such as BTC-USD"),
        (["-o", "x.gz", "--channels", "v4_nope"], "--channels: unknown channel 'v4_nope'"),
        (["-o", "x.gz", "--channels", "v4_candles"], "--candles.resolutions: v4_candles is in --channels"),
        (["-o", "x.gz", "--duration", "soon"], "--duration: expected a duration such as 5s or 500ms"),
        (["-o", "x.gz", "--duration", "0"], "--duration: duration must be greater than zero"),
        (["-o", "x.gz", "--dydx.ws-url", "http://x"], "--dydx.ws-url: must start with ws:// or wss://"),
        (["-o", "x.gz", "--dydx.network", "devnet"], "--dydx.network: must be one of mainnet, testnet"),
        (["-o", "x.gz", "--feed.subscribe-rate", "0"], "--feed.subscribe-rate: expected a positive number"),
        (["-o", "x.gz", "--feed.batched"], "unrecognized arguments: --feed.batched"),
    ],
)
def test_record_cli_refuses_bad_flags_with_a_reason(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The exporter's own wording (one parser for both): the flag once, the reason, where it came from."""
    assert record_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dydx-exporter record: error: {message}"), err
    assert err.count("\n") == 1, "one line, no usage dump"


def test_record_flags_are_the_exporters_own() -> None:
    """The shared flags parse into the exporter's Settings (defaults too), and --dydx.rest-url follows
    --dydx.ws-url's host unless given."""
    config = record_config_from_argv(
        [
            "-o",
            "c.gz",
            "--dydx.ws-url",
            "ws://127.0.0.1:3003/v4/ws",
            "--markets",
            "BTC-USD",
            "--duration",
            "90s",
        ]
    )
    exporter = Settings.from_sources(
        ["--dydx.ws-url", "ws://127.0.0.1:3003/v4/ws", "--markets", "BTC-USD"], {}
    )
    assert config.settings.feed.ws_url == exporter.feed.ws_url and config.settings.markets == ("BTC-USD",)
    assert config.settings.feed.rest_url == "http://127.0.0.1:3003" and config.duration == 90.0
    assert config.settings.channels == exporter.channels and config.output == Path("c.gz")
    testnet = record_config_from_argv(["--output", "c.gz", "--dydx.network", "testnet"])
    assert testnet.settings.feed.rest_url == NETWORKS["testnet"][1] and testnet.duration is None
    help_text = build_record_parser().format_help()
    for option in OPTIONS:
        if option.flag in EXPORTER_FLAGS:
            assert option.help.split()[0] in help_text
