"""`dydx-exporter simulate` as a process: flags, startup, SIGTERM → clients closed with 1012, exit 0."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest

from exporter.protocol import channels as ch
from exporter.simulator.cli import build_parser, config_from_args
from tests.fixtures.simulator import simulator_ws_url, start_simulator_process
from tests.simulator.probe import Probe

pytestmark = pytest.mark.timeout(30)


def test_flags_build_the_config() -> None:
    args = build_parser().parse_args(
        ["--web.listen-address", "0.0.0.0:4000", "--markets", "BTC-USD,eth-usd", "--block-time", "0.5",
         "--rate", "10", "--paused", "--ping-interval", "5", "--pong-timeout", "2", "--subaccounts", "3",
         "--control.allow-remote", "--rest.rate-limit", "100"]
    )  # fmt: skip
    config = config_from_args(args)
    assert (config.host, config.port) == ("0.0.0.0", 4000)
    assert config.markets == ("BTC-USD", "ETH-USD")
    assert config.block_time == 0.5 and config.rate == 10 and config.paused
    assert config.ping_interval == 5 and config.pong_timeout == 2 and config.subaccounts == 3
    assert config.allow_remote_control and config.rest_rate_limit == 100


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--web.listen-address", "nowhere"], "--web.listen-address must be HOST:PORT"),
        (["--block-time", "0"], "--block-time must be > 0"),
        (["--markets", "btc"], "--markets must be a count or a list"),
    ],
)
def test_bad_flags_fail_naming_the_flag(flags: list[str], fragment: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "simulate", *flags], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 2 and fragment in result.stderr


async def test_sigterm_closes_clients_with_1012_and_exits_0() -> None:
    process = await start_simulator_process("--markets", "3", "--block-time", "0.1")
    probe = None
    try:
        probe = await Probe.open(await simulator_ws_url(process, timeout=15))
        await probe.subscribe(ch.BLOCK_HEIGHT)
        await probe.next_type("channel_data")
        process.proc.send_signal(signal.SIGTERM)
        assert await probe.wait_closed() == ch.CLOSE_SERVICE_RESTARTING
        assert await asyncio.wait_for(process.proc.wait(), 5) == 0
    finally:
        if probe is not None:
            await probe.close()
        await process.close()
