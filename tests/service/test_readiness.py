"""/readyz tells the truth about the data (issue 13 point 6), and dydx_ready says the same.

The exporter runs as users start it (`python -m exporter` with flags) against the simulator. A stalled
v4_trades channel turns /readyz 503 with a body naming v4_trades once the channel has been silent for
--data.stale-after, while every link stays connected; when the stall ends it is ready again. dydx_ready
follows /readyz at every step, and dydx_component_up{component="processor"} (data is fresh) with it.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from exporter.protocol import channels as ch
from tests.fixtures.exporter import start_exporter_process
from tests.fixtures.support import fault
from tests.helpers import metric_value, scrape, wait_for

pytestmark = pytest.mark.timeout(60)

STALE_AFTER = 1.5
STALL_S = 5.0


async def _status(session: aiohttp.ClientSession, base: str) -> tuple[int, str, float | None, float | None]:
    """(/readyz status, its body, dydx_ready, dydx_component_up{processor}) read one right after the other."""
    async with session.get(base + "/readyz") as resp:
        status, body = resp.status, await resp.text()
    samples = await scrape(base + "/metrics", session)
    fresh = metric_value(samples, "dydx_component_up", component="processor")
    return status, body, metric_value(samples, "dydx_ready"), fresh


async def test_a_stalled_channel_makes_readyz_fail_naming_it_and_dydx_ready_follows(simulator_factory):
    # About 25 trades/s across the markets: a v4_trades silent for 1.5 s is the stall, not chance.
    sim = await simulator_factory(markets=3, block_time=0.1)
    exporter = await start_exporter_process(
        sim, f"--data.stale-after={STALE_AFTER}s", "--feed.backoff-max=1s", "--channels",
        ",".join((ch.MARKETS, ch.TRADES, ch.ORDERBOOK, ch.BLOCK_HEIGHT, ch.CANDLES)),
        "--candles.resolutions=1MIN",
    )  # fmt: skip
    try:
        listening = await exporter.wait_event("web_listening")
        base = f"http://127.0.0.1:{listening['port']}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

            async def ready() -> Any:
                status, _, gauge, fresh = await _status(session, base)
                return status == 200 and gauge == 1 and fresh == 1

            await wait_for(ready, timeout=20, message="/readyz 200 and dydx_ready 1")
            await fault(sim, "stall", channel=ch.TRADES, seconds=STALL_S)
            stalled_at = time.monotonic()

            async def stale() -> Any:
                status, body, gauge, fresh = await _status(session, base)
                return (body, gauge, fresh) if status == 503 else None

            body, gauge, fresh = await wait_for(
                stale, timeout=STALL_S, message="/readyz 503 during the stall"
            )
            assert "v4_trades: no data for" in body, body
            assert f"stale after {STALE_AFTER:g}s" in body
            # Only the stalled channel is named: the links, the other channels and quiet candles are fine.
            reasons = [line for line in body.splitlines() if line.startswith("- ")]
            assert len(reasons) == 1, body
            assert gauge == 0 and fresh == 0  # the processor component reads "data is fresh" the same way
            assert time.monotonic() - stalled_at >= STALE_AFTER - 0.5  # not before the data went stale
            await wait_for(ready, timeout=STALL_S + 10, message="ready again after the stall")
    finally:
        await exporter.stop()
