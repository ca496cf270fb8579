"""Settings: flags beat environment beat the YAML file beat defaults; bad values name the option."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.config import ConfigError, Settings, parse_duration, shard_of
from exporter.protocol import channels as ch
from exporter.run import main as run_main


def settings(*argv: str, env: dict[str, str] | None = None) -> Settings:
    return Settings.from_sources(list(argv), env or {})


def test_defaults_point_at_mainnet_with_default_channels():
    s = settings()
    assert (s.listen_host, s.listen_port, s.telemetry_path) == ("", 9741, "/metrics")
    assert s.feed.ws_url == "wss://indexer.dydx.trade/v4/ws"
    assert s.feed.rest_url == "https://indexer.dydx.trade"
    assert s.channels == (ch.MARKETS, ch.TRADES, ch.ORDERBOOK, ch.BLOCK_HEIGHT)
    assert s.markets is None and (s.shard_index, s.shard_count) == (0, 1)
    assert s.feed.ping_timeout == 40.0 and s.feed.max_subscriptions == 32


def test_testnet_sets_both_urls_and_explicit_url_wins():
    s = settings("--dydx.network", "testnet")
    assert s.feed.ws_url == "wss://indexer.v4testnet.dydx.exchange/v4/ws"
    assert s.feed.rest_url == "https://indexer.v4testnet.dydx.exchange"
    s = settings("--dydx.network=testnet", "--dydx.ws-url=ws://127.0.0.1:3003/v4/ws")
    assert s.feed.ws_url == "ws://127.0.0.1:3003/v4/ws"


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path):
    config = tmp_path / "exporter.yml"
    config.write_text(
        "web.listen-address: 127.0.0.1:1111\n"
        "web.telemetry-path: /from-file\n"
        "markets: [BTC-USD, ETH-USD]\n"
        "feed.batched: true\n"
        "log.level: debug\n"
    )
    env = {
        "DYDX_EXPORTER_CONFIG_FILE": str(config),
        "DYDX_EXPORTER_WEB_LISTEN_ADDRESS": "127.0.0.1:2222",
        "DYDX_EXPORTER_WEB_TELEMETRY_PATH": "/from-env",
    }
    s = settings("--web.listen-address", "127.0.0.1:3333", env=env)
    assert s.listen_port == 3333  # flag
    assert s.telemetry_path == "/from-env"  # env beats file
    assert s.markets == ("BTC-USD", "ETH-USD") and s.feed.batched  # file beats default
    assert s.log_level == "debug"
    assert s.shutdown_timeout == 5.0  # default
    assert s.sources["web.listen-address"].startswith("flag")
    assert s.sources["web.telemetry-path"].startswith("environment")
    assert s.sources["markets"].startswith(str(config))


def test_candles_are_opt_in_by_resolution_and_durations_parse():
    s = settings(
        "--candles.resolutions", "1MIN,5MINS", "--feed.backoff-max", "2m", "--feed.ping-timeout=500ms"
    )
    assert ch.CANDLES in s.channels and s.candle_resolutions == ("1MIN", "5MINS")
    assert s.feed.backoff_max == 120.0 and s.feed.ping_timeout == 0.5
    assert parse_duration("1h30m") == 5400.0 and parse_duration(2) == 2.0


@pytest.mark.parametrize(
    ("argv", "env", "names"),
    [
        (["--web.listen-address", "nope"], {}, "--web.listen-address"),
        (["--markets", "btc usd"], {}, "--markets"),
        (["--channels", "v4_trades,v4_nope"], {}, "--channels"),
        (["--shard", "2/2"], {}, "--shard"),
        (["--candles.resolutions", "2MIN"], {}, "--candles.resolutions"),
        (["--channels", "v4_candles"], {}, "--candles.resolutions"),
        (["--dydx.network", "devnet"], {}, "--dydx.network"),
        (["--dydx.ws-url", "http://x/v4/ws"], {}, "--dydx.ws-url"),
        ([], {"DYDX_EXPORTER_FEED_BACKOFF_INITIAL": "soon"}, "DYDX_EXPORTER_FEED_BACKOFF_INITIAL"),
        ([], {"DYDX_EXPORTER_FEED_BATCHED": "maybe"}, "--feed.batched"),
        (["--log.level", "loud"], {}, "--log.level"),
        (["--no-such-flag"], {}, "--no-such-flag"),
        (["--feed.max-subscriptions", "33"], {}, "--feed.max-subscriptions"),
    ],
)
def test_bad_values_fail_naming_the_option(argv, env, names):
    with pytest.raises(ConfigError, match=re.escape(names)):
        settings(*argv, env=env)


def test_bad_file_key_and_missing_file(tmp_path: Path):
    config = tmp_path / "bad.yml"
    config.write_text("web.listen-adress: :1\n")
    with pytest.raises(ConfigError, match=re.escape("web.listen-adress")):
        settings("--config.file", str(config))
    with pytest.raises(ConfigError, match=r"--config\.file"):
        settings("--config.file", str(tmp_path / "missing.yml"))


def test_main_exits_2_naming_the_flag(capsys: pytest.CaptureFixture[str]):
    assert run_main(["--shard", "1/1"]) == 2
    assert "--shard" in capsys.readouterr().err
    assert run_main(["--version"]) == 0
    assert "dydx-exporter" in capsys.readouterr().out


def test_shards_partition_every_ticker_exactly_once():
    tickers = [f"M{i}-USD" for i in range(300)]
    owners = [[s.wants_market(t) for s in (settings("--shard", f"{i}/3") for i in range(3))] for t in tickers]
    assert all(sum(row) == 1 for row in owners)
    assert shard_of("BTC-USD", 7) == shard_of("BTC-USD", 7)  # stable, unlike hash()


def test_cli_bad_flag_exit_code_in_a_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--web.listen-address", "localhost:99999"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "--web.listen-address" in proc.stderr


def test_help_lists_every_flag_with_its_env_var(capsys: pytest.CaptureFixture[str]):
    from exporter.config import OPTIONS

    assert run_main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in OPTIONS:
        assert f"--{option.flag}" in out
        assert option.env in out
