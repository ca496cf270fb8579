"""Generate the small synthetic capture that ships with the tests, from the simulator itself (so it is
protocol-faithful), plus the simulator's own REST views at the end of the recording as ground truth.

    .venv/bin/python -m tests.data.make_capture   # rewrites sim-capture.jsonl.gz and sim-capture.truth.json

The recording follows the same steps a test would: simulator started paused, every subscription active
before the first event, a few seconds of events, paused again, and the recorder stopped only once it has
received every frame the simulator sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from exporter.config import Settings
from exporter.protocol import channels as ch
from exporter.simulator import faults
from exporter.simulator.recorder import RecordConfig, Recorder
from exporter.simulator.server import Simulator, SimulatorConfig
from tests.helpers import wait_for

DATA_DIR = Path(__file__).parent
CAPTURE = DATA_DIR / "sim-capture.jsonl.gz"
TRUTH = DATA_DIR / "sim-capture.truth.json"
MARKETS = ("BTC-USD", "ETH-USD", "SOL-USD")
CHANNELS = (ch.MARKETS, ch.TRADES, ch.ORDERBOOK, ch.BLOCK_HEIGHT, ch.CANDLES)
RESOLUTIONS = ("1MIN",)


@dataclass(frozen=True)
class Recorded:
    path: Path
    frames: int
    truth: dict[str, Any]


def _data_frames_sent(sim: Simulator) -> int:
    return sum(n for (_, kind), n in sim.stats.frames.items() if kind == ch.T_CHANNEL_DATA)


async def record_simulator(
    sim: Simulator,
    path: Path,
    *,
    seconds: float,
    markets: tuple[str, ...] = MARKETS,
    disconnect_midway: bool = False,
) -> Recorded:
    """Record `seconds` of events from a simulator started paused; returns the file and the simulator's
    REST views at the end (what a replay must arrive at). With `disconnect_midway`, the simulator closes
    every connection (1012) half-way, and the recording goes on once the recorder has reconnected and
    re-subscribed (getting fresh snapshots)."""
    recorder = Recorder(
        RecordConfig(
            output=path,
            settings=Settings.for_simulator(
                sim,
                network="simulator",
                markets=markets,
                channels=CHANNELS,
                candle_resolutions=RESOLUTIONS,
                subscribe_rate=200.0,
            ),
        )
    )
    await recorder.start()
    wanted = 2 + 3 * len(markets)  # markets, block height; per market orderbook, trades, 1MIN candles
    # Frames the simulator sent and the recorder received before the current connection.
    base_sent = base_received = 0

    def received() -> int:
        return sum(recorder.sink.data_frames.values())

    async def run_for(duration: float) -> None:
        await wait_for(
            lambda: sum(sim.hub.counts().values()) >= wanted, timeout=10, message="recorder subscribed"
        )
        sim.resume()
        await asyncio.sleep(duration)  # the length of the recording, not a wait for a condition
        sim.pause()
        await wait_for(
            lambda: received() - base_received >= _data_frames_sent(sim) - base_sent,
            timeout=10,
            message="recorder received every data frame sent",
        )

    try:
        if disconnect_midway:
            await run_for(seconds / 2)
            sim.apply_fault(*faults.parse({"kind": "disconnect", "code": ch.CLOSE_SERVICE_RESTARTING}))
            await wait_for(lambda: recorder.sink.connections >= 2, timeout=10, message="recorder reconnected")
            base_sent, base_received = _data_frames_sent(sim), received()
            await run_for(seconds / 2)
        else:
            await run_for(seconds)
        source = sim.source
        truth = {
            "height": source.height()[0],
            "orderbooks": {t: source.rest_orderbook(t) for t in markets},
            "trades": {t: source.rest_trades(t) for t in markets},
            "candles_1min": {t: source.rest_candles(t, "1MIN") for t in markets},
            "oracle": {
                t: m["oraclePrice"]
                for t, m in (source.rest_markets(None, 1000) or {"markets": {}})["markets"].items()
            },
            "trades_published": dict(sim.stats.trades),
        }
    finally:
        await recorder.stop()
    return Recorded(path, recorder.frames, truth)


async def main() -> None:
    sim = Simulator(
        SimulatorConfig(
            port=0, seed=7, markets=MARKETS, block_time=0.2, rate=0.8, paused=True, trading_interval=1.0
        )
    )
    await sim.start()
    try:
        recorded = await record_simulator(sim, CAPTURE, seconds=2.5)
    finally:
        await sim.stop()
    TRUTH.write_bytes(orjson.dumps(recorded.truth, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"{CAPTURE}: {recorded.frames} frames, {CAPTURE.stat().st_size} bytes; truth in {TRUTH}")


if __name__ == "__main__":
    asyncio.run(main())
