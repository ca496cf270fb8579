"""`dydx-exporter simulate` as a process: flags, startup, SIGTERM → clients closed with 1012, exit 0."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest

from exporter.protocol import channels as ch
from exporter.simulator.cli import DEFAULT_LISTEN, SIMULATOR_OPTIONS, build_parser, main, parse_args
from exporter.simulator.server import SimulatorConfig
from tests.fixtures.simulator import simulator_ws_url, start_simulator_process
from tests.simulator.probe import Probe

pytestmark = pytest.mark.timeout(30)


def test_flags_build_the_config() -> None:
    args = parse_args(
        ["--web.listen-address", "0.0.0.0:4000", "--markets", "BTC-USD,eth-usd", "--block-time", "0.5",
         "--rate", "10", "--paused", "--ping-interval", "5", "--pong-timeout", "2", "--subaccounts", "3",
         "--control.allow-remote", "--rest.rate-limit", "100", "--send-buffer", "1024", "--seed", "7",
         "--snapshot-delay", "0", "--batch-interval", "0.1", "--trading-interval", "3",
         "--log.level", "debug"]
    )  # fmt: skip
    config = args.config
    assert (config.host, config.port) == ("0.0.0.0", 4000)
    assert config.markets == ("BTC-USD", "ETH-USD") and config.seed == 7
    assert config.block_time == 0.5 and config.rate == 10 and config.paused
    assert config.ping_interval == 5 and config.pong_timeout == 2 and config.subaccounts == 3
    assert config.allow_remote_control and config.rest_rate_limit == 100 and config.send_buffer_bytes == 1024
    assert config.snapshot_delay == 0 and config.batch_interval == 0.1 and config.trading_interval == 3
    assert args.log_level == "debug" and args.replay == ""
    # Defaults are SimulatorConfig's own, and `:port` means every interface, as for the exporter.
    assert parse_args([]).config == SimulatorConfig()
    assert (parse_args(["--web.listen-address", ":4001"]).config.host, DEFAULT_LISTEN) == (
        "",
        "127.0.0.1:3003",
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--web.listen-address", ":99999"], "--web.listen-address: port must be 0..65535, not 99999"),
        (
            ["--web.listen-address", "nowhere"],
            "--web.listen-address: expected host:port or :port, not 'nowhere'",
        ),
        (["--rate", "banana"], "--rate: expected a number >= 0, not 'banana'"),
        (["--block-time", "0"], "--block-time: expected a positive number, not '0'"),
        (["--markets", "btc"], "--markets: expected a count or a list like BTC-USD,ETH-USD, not 'btc'"),
        (["--markets", "BTC-USD,btc-usd"], "--markets: BTC-USD listed twice"),
        (["--speed", "fast"], "--speed: expected a number >= 0, not 'fast'"),
        (["--log.level", "loud"], "--log.level: must be one of debug, info, warn, error, not 'loud'"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_flags_fail_naming_the_flag_once(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The exporter's wording: the flag once, the reason, where the value came from; exit 2, one line."""
    assert main(flags) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dydx-exporter simulate: error: {message}"), err
    assert err.count("\n") == 1
    flag = flags[0]
    if flag.startswith("--") and flag != "--no-such-flag":
        assert err.count(flag) == 1, err
        assert err.rstrip().endswith("(from the command line)"), err


def test_bad_flag_in_a_subprocess_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "simulate", "--web.listen-address", ":99999"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2 and "port must be 0..65535, not 99999" in result.stderr


def test_every_flag_has_help_stating_its_default() -> None:
    help_text = " ".join(build_parser().format_help().split())
    for option in SIMULATOR_OPTIONS:
        assert f"--{option.flag}" in help_text
        line = help_text[help_text.index(f"--{option.flag} ") :]
        assert option.help.split()[0] in line
    for shown in ("(default 127.0.0.1:3003)", "(default 267)", "(default 30)", "(default 0.01)",
                  "(default false)", "(default 8388608)", "(default none)", "(default info)"):  # fmt: skip
        assert shown in help_text, shown


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
