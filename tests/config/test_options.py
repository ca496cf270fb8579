"""The option table is the one source of the exporter's flags, environment variables, config-file keys and
Settings: every option round-trips through each of the three with the same typed result, and a bad value
is refused with one wording that names the option and where the value came from."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import OPTIONS, ConfigError, FeedSettings, Settings
from exporter.run import main as run_main

pytestmark = pytest.mark.timeout(60)

ADDRESS = "dydx1" + "q" * 38
#: flag → (a value that is not the default, as a user writes it; what Settings holds for it, by dest).
SAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "web.listen-address": ("127.0.0.1:9999", {"listen_host": "127.0.0.1", "listen_port": 9999}),
    "web.telemetry-path": ("/m", {"telemetry_path": "/m"}),
    "dydx.network": ("testnet", {"network": "testnet"}),
    "dydx.ws-url": ("ws://127.0.0.1:1/v4/ws", {"feed.ws_url": "ws://127.0.0.1:1/v4/ws"}),
    "dydx.rest-url": ("http://127.0.0.1:1/", {"feed.rest_url": "http://127.0.0.1:1"}),
    "markets": ("BTC-USD,ETH-USD", {"markets": ("BTC-USD", "ETH-USD")}),
    "channels": ("v4_trades,v4_block_height", {"channels": ("v4_trades", "v4_block_height")}),
    "candles.resolutions": ("1MIN", {"candle_resolutions": ("1MIN",)}),
    "subaccounts": (f"{ADDRESS}/0", {"subaccounts": (f"{ADDRESS}/0",)}),
    "subaccounts.refresh-interval": ("2m", {"subaccount_refresh_interval": 120.0}),
    "shard": ("1/3", {"shard_index": 1, "shard_count": 3}),
    "feed.batched": ("true", {"feed.batched": True}),
    "feed.compression": ("true", {"feed.compression": True}),
    "feed.backoff-initial": ("250ms", {"feed.backoff_initial": 0.25}),
    "feed.backoff-max": ("2m", {"feed.backoff_max": 120.0}),
    "feed.stable-after": ("1m", {"feed.stable_after": 60.0}),
    "feed.handshake-timeout": ("3s", {"feed.handshake_timeout": 3.0}),
    "feed.ping-interval": ("7s", {"feed.ping_interval": 7.0}),
    "feed.ping-timeout": ("1m30s", {"feed.ping_timeout": 90.0}),
    "feed.silence-timeout": ("45s", {"feed.silence_timeout": 45.0}),
    "feed.subscribe-rate": ("12.5", {"feed.subscribe_rate": 12.5}),
    "feed.subscribe-timeout": ("9s", {"feed.subscribe_timeout": 9.0}),
    "feed.resubscribe-delay": ("0", {"feed.resubscribe_delay": 0.0}),
    "feed.subscribe-retries": ("7", {"feed.subscribe_retries": 7}),
    "feed.max-subscriptions": ("16", {"feed.max_subscriptions": 16}),
    "feed.max-frame-bytes": ("1024", {"feed.max_frame_bytes": 1024}),
    "discovery.interval": ("1h", {"feed.discovery_interval": 3600.0}),
    "discovery.timeout": ("4s", {"feed.discovery_timeout": 4.0}),
    "chain.rpc-url": (
        "http://127.0.0.1:26657,http://[::1]:26657",
        {"chain_rpc_urls": ("http://127.0.0.1:26657", "http://[::1]:26657")},
    ),
    "chain.poll-interval": ("7s", {"chain_poll_interval": 7.0}),
    "rest.height-interval": ("0", {"rest_height_interval": 0.0}),
    "orderbook.crossed-resync-after": ("0", {"crossed_resync_after": 0.0}),
    "orderbook.resync-interval": ("1h", {"resync_interval": 3600.0}),
    "orderbook.audit-interval": ("30s", {"audit_interval": 30.0}),
    "orderbook.audit-window": ("2s", {"audit_window": 2.0}),
    "data.stale-after": ("90s", {"stale_after": 90.0}),
    "data.message-id-grace": ("3s", {"message_id_grace": 3.0}),
    "shutdown.timeout": ("2s", {"shutdown_timeout": 2.0}),
    "log.level": ("DEBUG", {"log_level": "debug"}),
    "log.format": ("json", {"log_format": "json"}),
}


def held(settings: Settings, dest: str) -> Any:
    owner: Any = settings.feed if dest.startswith("feed.") else settings
    return getattr(owner, dest.removeprefix("feed."))


def through(how: str, flag: str, value: str, tmp_path: Path) -> Settings:
    option = next(o for o in OPTIONS if o.flag == flag)
    env_name = option.env
    if how == "flag":  # a boolean flag takes no value: --feed.batched / --no-feed.batched
        argv = [f"--{'' if value == 'true' else 'no-'}{flag}"] if option.is_bool else [f"--{flag}", value]
        return Settings.from_sources(argv, {})
    if how == "env":
        return Settings.from_sources([], {env_name: value})
    config = tmp_path / "exporter.yml"
    config.write_text(yaml.safe_dump({flag: value}))
    return Settings.from_sources(["--config.file", str(config)], {})


def sample(flag: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    if flag == "web.config.file":
        web = tmp_path / "web.yml"
        web.write_text("http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
        return str(web), {"web_config_file": str(web)}
    return SAMPLES[flag]


def test_every_option_has_a_sample_here() -> None:
    """A new option joins the round trip below (or this fails and says which one)."""
    missing = {o.flag for o in OPTIONS} - set(SAMPLES) - {"config.file", "web.config.file"}
    assert not missing, f"add a sample value for {sorted(missing)}"


@pytest.mark.parametrize("how", ["flag", "env", "file"])
@pytest.mark.parametrize("flag", [o.flag for o in OPTIONS if o.flag != "config.file"])
def test_every_option_round_trips(flag: str, how: str, tmp_path: Path) -> None:
    value, expected = sample(flag, tmp_path)
    settings = through(how, flag, value, tmp_path)
    for dest, typed in expected.items():
        assert held(settings, dest) == typed, f"--{flag} through {how}: {dest}"
    assert settings.sources[flag].startswith(
        {"flag": "flag", "env": "environment", "file": str(tmp_path)}[how]
    )
    # Nothing else moved away from its default (testnet changes the default URLs, as documented).
    defaults = Settings.from_sources([], {})
    for other in OPTIONS:
        if other.flag in (flag, "config.file", "dydx.ws-url", "dydx.rest-url", "channels"):
            continue
        for dest in sample(other.flag, tmp_path)[1]:
            assert held(settings, dest) == held(defaults, dest), f"--{flag} changed {dest}"


def test_config_file_round_trips_through_flag_and_env(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yml"
    config.write_text("markets: [BTC-USD]\nfeed.batched: true\nfeed.subscribe-rate: 3\n")  # native YAML
    for settings in (
        Settings.from_sources(["--config.file", str(config)], {}),
        Settings.from_sources([], {"DYDX_EXPORTER_CONFIG_FILE": str(config)}),
    ):
        assert settings.markets == ("BTC-USD",) and settings.feed.batched
        assert settings.feed.subscribe_rate == 3.0


def test_every_settings_field_comes_from_an_option_and_defaults_agree() -> None:
    """The dataclasses take their defaults from the table: a field without an option (or an option
    filling no field) would be a second declaration."""
    dests = {d for o in OPTIONS for d in (o.dest if isinstance(o.dest, tuple) else (o.dest,)) if d}
    fields = {f"feed.{f.name}" for f in dataclasses.fields(FeedSettings)} | {
        f.name for f in dataclasses.fields(Settings) if f.name not in ("feed", "sources", "web_config")
    }
    assert dests == fields
    defaults = Settings.from_sources([], {})
    plain = Settings(feed=FeedSettings(ws_url=defaults.feed.ws_url, rest_url=defaults.feed.rest_url))
    assert dataclasses.replace(defaults, sources={}) == plain


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (
            ["--dydx.network", "foonet"],
            {},
            "--dydx.network: must be one of mainnet, testnet, not 'foonet' (from the command line)",
        ),
        (
            [],
            {"DYDX_EXPORTER_FEED_SUBSCRIBE_RATE": "banana"},
            "--feed.subscribe-rate: expected a positive number, not 'banana' "
            "(from environment DYDX_EXPORTER_FEED_SUBSCRIBE_RATE)",
        ),
        (["--log.level", "loud"], {}, "--log.level: must be one of debug, info, warn, error, not 'loud'"),
    ],
)
def test_bad_values_say_the_option_the_reason_and_the_source(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        Settings.from_sources(argv, env)
    assert str(excinfo.value).startswith(message)
    assert str(excinfo.value).count(argv[0] if argv else "--feed.subscribe-rate") == 1


def test_a_bad_web_config_file_stops_the_exporter_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read and validated with the other settings: exit 2 naming the flag and the file's own field, and
    nothing is started (the port stays free, no log line)."""
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n")
    assert run_main(["--web.config.file", str(web), "--web.listen-address", "127.0.0.1:0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dydx-exporter: error: --web.config.file: web config {web}: tls_server_config")
    assert "exporter_started" not in err
    with pytest.raises(ConfigError, match="cannot read"):
        Settings.from_sources([], {"DYDX_EXPORTER_WEB_CONFIG_FILE": str(tmp_path / "missing.yml")})


def test_help_states_every_default_and_env_var() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    flat = " ".join(out.split())
    for option in OPTIONS:
        assert f"--{option.flag}" in flat and option.env in flat
    assert "(default 30s; env DYDX_EXPORTER_DATA_STALE_AFTER)" in flat
