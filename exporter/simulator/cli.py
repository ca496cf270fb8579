"""`dydx-exporter simulate [flags]`: the embedded indexer simulator as a process.

Its flags are option rows (exporter.options), parsed and worded as the exporter's are; each default is the
`SimulatorConfig` default, so it is written once. SIGINT / SIGTERM stop it cleanly: every client is closed
with 1012 ("Service restarting").
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from exporter import logs, options
from exporter.config import OPTIONS_BY_FLAG
from exporter.lifecycle import StopSignals
from exporter.options import (
    ConfigError,
    Option,
    parse_bool,
    parse_int,
    parse_listen_address,
    parse_non_negative_float,
    parse_non_negative_int,
    parse_positive_float,
    parse_positive_int,
    parse_str,
)
from exporter.protocol import channels as ch
from exporter.simulator.chain import parse_rpc_listen_address
from exporter.simulator.server import Simulator, SimulatorConfig, SourceFactory

PROG: Final = "dydx-exporter simulate"
DESCRIPTION: Final = (
    "The embedded dYdX v4 indexer simulator: WebSocket at /v4/ws, REST under /v4/, ground truth at /metrics "
    "and /control/truth, the control API under /control/ (its index at /control/ and /), all on one address."
)
_DEFAULTS: Final = SimulatorConfig()
DEFAULT_LISTEN: Final = f"{_DEFAULTS.host}:{_DEFAULTS.port}"


def parse_markets(value: object) -> int | tuple[str, ...]:
    """A count (real tickers first) or a comma-separated list of tickers."""
    text = parse_str(value)
    if text.isascii() and text.isdigit():
        if int(text) < 1:
            raise ValueError(f"expected a count >= 1 or a list like BTC-USD,ETH-USD, not {text!r}")
        return int(text)
    tickers = tuple(t.strip().upper() for t in text.split(",") if t.strip())
    bad = [t for t in tickers if not ch.TICKER_RE.match(t)]
    if not tickers or bad:
        raise ValueError(f"expected a count or a list like BTC-USD,ETH-USD, not {text!r}")
    twice = sorted({t for t in tickers if tickers.count(t) > 1})
    if twice:
        raise ValueError(f"{', '.join(twice)} listed twice")
    return tickers


def parse_speed(value: object) -> float:
    """A number >= 0, or `max` (= 0, as fast as possible)."""
    return 0.0 if parse_str(value).lower() == "max" else parse_non_negative_float(value)


def parse_percent(value: object) -> float:
    """A share of connections, 0 to 100."""
    percent = parse_non_negative_float(value)
    if percent > 100:
        raise ValueError(f"expected a percentage from 0 to 100, not {value!r}")
    return percent


def _sim(flag: str, dest: str, help: str, parse: Any) -> Option:
    """A row whose default is SimulatorConfig's."""
    return Option(flag, getattr(_DEFAULTS, dest), help, parse, dest)


SIMULATOR_OPTIONS: Final = (
    Option(
        "web.listen-address",
        DEFAULT_LISTEN,
        "HOST:PORT (or :PORT, every interface) to serve everything on; port 0 picks a free one",
        parse_listen_address,
        ("host", "port"),
    ),
    _sim("seed", "seed", "seed of the synthetic market: the same seed gives the same events", parse_int),
    _sim("markets", "markets", "market count (real tickers first) or a comma-separated list", parse_markets),
    _sim("block-time", "block_time", "seconds per block", parse_positive_float),
    _sim(
        "rate",
        "rate",
        "activity multiplier; 1 ≈ 400 orderbook updates/s and 25 trades/s in total",
        parse_non_negative_float,
    ),
    _sim("paused", "paused", "start with market events paused (POST /control/resume)", parse_bool),
    _sim(
        "ping-interval",
        "ping_interval",
        "seconds between protocol pings to each client",
        parse_positive_float,
    ),
    _sim(
        "pong-timeout",
        "pong_timeout",
        "close 1011 when a ping is not answered within this many seconds",
        parse_positive_float,
    ),
    _sim(
        "snapshot-delay",
        "snapshot_delay",
        "seconds a subscription's snapshot fetch takes",
        parse_non_negative_float,
    ),
    _sim(
        "batch-interval",
        "batch_interval",
        "flush period of batched subscriptions, seconds",
        parse_positive_float,
    ),
    _sim(
        "trading-interval",
        "trading_interval",
        "seconds between v4_markets trading diffs",
        parse_positive_float,
    ),
    _sim("subaccounts", "subaccounts", "synthetic subaccounts", parse_non_negative_int),
    _sim(
        "send-buffer",
        "send_buffer_bytes",
        "bytes queued for one client before it is cut off as a slow consumer",
        parse_positive_int,
    ),
    _sim(
        "rest.rate-limit",
        "rest_rate_limit",
        "REST requests allowed per 10 s per client IP, then 429 (comlink's default is 100; 0 = off)",
        parse_non_negative_int,
    ),
    _sim(
        "ws.subscription-limit-abuse",
        "subscription_limit_abuse",
        "later socks' abuse rule: more than 5 subscription-cap hits in 10 s on a connection close it with "
        "4008, then its address's upgrades get 429 (Retry-After: 30) for 30 s",
        parse_bool,
    ),
    _sim(
        "ws.edge-block",
        "edge_block",
        "5 penalty 429s (the abuse rule's or the penalty fault's) in 60 s block the address for 300 s "
        "(a JSON 429), as the edge does",
        parse_bool,
    ),
    _sim(
        "ws.compression-percent",
        "compression_percent",
        "share (0-100) of connections offering permessage-deflate that get it, drawn per connection; "
        "frames under 1024 bytes are never compressed",
        parse_percent,
    ),
    Option(
        "chain-rpc.listen-address",
        "",
        "HOST:PORT of the chain's CometBFT RPC (/status, /block) for --chain.rpc-url; empty = not served",
        parse_rpc_listen_address,
        ("chain_rpc_host", "chain_rpc_port"),
    ),
    _sim("chain-rpc.network", "network", "the network (chain id) the chain's RPC reports", parse_str),
    _sim(
        "control.allow-remote",
        "allow_remote_control",
        "let non-loopback clients use /control/ (otherwise 403)",
        parse_bool,
    ),
    Option("replay", "", "serve a capture made by `dydx-exporter record` instead of the synthetic market"),
    Option("speed", "1", "replay pace multiplier (0 or max = as fast as possible)", parse_speed),
    Option("replay.loop", False, "start the capture over when it ends", parse_bool, "replay_loop"),
    Option(
        "replay.retime",
        False,
        "move exchange timestamps to the replay's clock (data as fresh as when recorded)",
        parse_bool,
        "replay_retime",
    ),
    OPTIONS_BY_FLAG["log.level"],
    OPTIONS_BY_FLAG["log.format"],
)


@dataclass(frozen=True, slots=True)
class SimulateArgs:
    """The parsed command line (the defaults are the option rows')."""

    config: SimulatorConfig
    replay: str
    speed: float
    replay_loop: bool
    replay_retime: bool
    log_level: str
    log_format: str


def build_parser() -> Any:
    return options.build_parser(SIMULATOR_OPTIONS, prog=PROG, description=DESCRIPTION, with_env=False)


def parse_args(argv: Sequence[str]) -> SimulateArgs:
    """The command line → SimulateArgs. Raises ConfigError naming the flag (SystemExit for --help)."""
    _, values = options.parse_command(build_parser(), SIMULATOR_OPTIONS, argv)
    config_fields = {f.name for f in dataclasses.fields(SimulatorConfig)}
    try:
        config = SimulatorConfig(**{k: v for k, v in values.items() if k in config_fields})
    except ValueError as exc:  # what one flag cannot tell (a ticker listed twice)
        raise ConfigError(str(exc)) from None
    rest = {f.name: values[f.name] for f in dataclasses.fields(SimulateArgs) if f.name != "config"}
    return SimulateArgs(config=config, **rest)


def source_from_args(args: SimulateArgs) -> SourceFactory | None:
    """The replay source when --replay is given; None means the synthetic market."""
    if not args.replay:
        return None
    from exporter.simulator.replay import replay_source

    # Reads the header now: a file that is not a capture fails here, naming the file.
    try:
        return replay_source(args.replay, speed=args.speed, loop=args.replay_loop, retime=args.replay_retime)
    except (ValueError, OSError) as exc:
        raise options.config_error("replay", str(exc), "flag --replay") from None


async def serve(config: SimulatorConfig, source_factory: SourceFactory | None = None) -> None:
    sim = Simulator(config, source_factory)
    try:
        with StopSignals() as signals:
            await sim.start()
            await signals.wait()
    finally:
        await sim.stop()


def main(argv: Sequence[str] | None = None) -> int:
    flags = list(sys.argv[1:] if argv is None else argv)

    def build() -> tuple[SimulateArgs, SourceFactory | None]:
        args = parse_args(flags)
        return args, source_from_args(args)

    parsed = options.parse_command_line(PROG, build)
    if isinstance(parsed, int):
        return parsed
    args, source_factory = parsed
    logs.configure(args.log_level, args.log_format)  # type: ignore[arg-type]
    try:
        asyncio.run(serve(args.config, source_factory))
    except OSError as exc:
        host, port = args.config.host, args.config.port
        print(f"{PROG}: cannot serve on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0
