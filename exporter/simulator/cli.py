"""`dydx-exporter simulate [flags]`: the embedded indexer simulator as a process.

SIGINT / SIGTERM stop it cleanly: every client is closed with 1012 ("Service restarting").
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from exporter import logs
from exporter.config import parse_listen_address
from exporter.lifecycle import StopSignals
from exporter.protocol import channels as ch
from exporter.simulator.catalog import DEFAULT_MARKET_COUNT
from exporter.simulator.server import Simulator, SimulatorConfig, SourceFactory

DEFAULT_LISTEN = "127.0.0.1:3003"


def listen_address_arg(value: str) -> tuple[str, int]:
    try:
        return parse_listen_address(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--web.listen-address must be HOST:PORT, not {value!r}") from None


def parse_markets(value: str) -> int | tuple[str, ...]:
    if value.isdigit():
        if int(value) < 1:
            raise argparse.ArgumentTypeError("--markets must be >= 1")
        return int(value)
    tickers = tuple(t.strip().upper() for t in value.split(",") if t.strip())
    bad = [t for t in tickers if not ch.TICKER_RE.match(t)]
    if not tickers or bad:
        raise argparse.ArgumentTypeError(
            f"--markets must be a count or a list like BTC-USD,ETH-USD; bad: {bad}"
        )
    return tickers


def _positive(name: str, allow_zero: bool = False) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, not {value!r}") from None
        if number < 0 or (number == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, not {value}")
        return number

    return parse


def _replay_speed(value: str) -> float:
    """--speed: a number >= 0, or `max` (= 0, as fast as possible)."""
    return 0.0 if value.strip().lower() == "max" else _positive("--speed", allow_zero=True)(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dydx-exporter simulate",
        description="The embedded dYdX v4 indexer simulator: WebSocket at /v4/ws, REST under /v4/, ground "
        "truth at /metrics and the control API under /control/, all on one address.",
    )
    p.add_argument(
        "--web.listen-address",
        dest="listen",
        metavar="HOST:PORT",
        type=listen_address_arg,
        default=DEFAULT_LISTEN,
        help=f"HOST:PORT to serve on (default {DEFAULT_LISTEN})",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic market (default 1)")
    p.add_argument(
        "--markets",
        type=parse_markets,
        default=DEFAULT_MARKET_COUNT,
        help=f"market count (real tickers first) or a comma-separated list (default {DEFAULT_MARKET_COUNT})",
    )
    p.add_argument(
        "--block-time", type=_positive("--block-time"), default=1.0, help="seconds per block (default 1)"
    )
    p.add_argument(
        "--rate",
        type=_positive("--rate", allow_zero=True),
        default=1.0,
        help="activity multiplier; 1 ≈ 400 orderbook updates/s and 25 trades/s in total (default 1)",
    )
    p.add_argument(
        "--paused", action="store_true", help="start with market events paused (POST /control/resume)"
    )
    p.add_argument(
        "--ping-interval",
        type=_positive("--ping-interval"),
        default=ch.SERVER_PING_INTERVAL_S,
        help="seconds between protocol pings to each client (default 30)",
    )
    p.add_argument(
        "--pong-timeout",
        type=_positive("--pong-timeout"),
        default=ch.SERVER_PONG_TIMEOUT_S,
        help="close 1011 when a ping is not answered within this (default 10)",
    )
    p.add_argument(
        "--snapshot-delay",
        type=_positive("--snapshot-delay", allow_zero=True),
        default=0.01,
        help="seconds a subscription's snapshot fetch takes (default 0.01)",
    )
    p.add_argument(
        "--batch-interval",
        type=_positive("--batch-interval"),
        default=ch.BATCH_SEND_INTERVAL_S,
        help="flush period of batched subscriptions (default 0.25)",
    )
    p.add_argument(
        "--trading-interval",
        type=_positive("--trading-interval"),
        default=ch.TRADING_DIFF_INTERVAL_S,
        help="seconds between v4_markets trading diffs (default 30)",
    )
    p.add_argument("--subaccounts", type=int, default=1, help="synthetic subaccounts (default 1)")
    p.add_argument(
        "--send-buffer",
        type=int,
        default=8 * 1024 * 1024,
        help="bytes queued for one client before it is cut off as a slow consumer (default 8 MiB)",
    )
    p.add_argument(
        "--rest.rate-limit",
        dest="rest_rate_limit",
        type=int,
        default=0,
        help="REST requests allowed per 10 s per client IP, then 429 (comlink's default is 100; 0 = off)",
    )
    p.add_argument(
        "--control.allow-remote",
        dest="allow_remote",
        action="store_true",
        help="let non-loopback clients use /control/ (default: 403)",
    )
    p.add_argument(
        "--replay",
        metavar="FILE",
        default=None,
        help="serve a capture made by `dydx-exporter record` instead of the synthetic market",
    )
    p.add_argument(
        "--speed",
        type=_replay_speed,
        default=1.0,
        help="replay pace multiplier (default 1; 0 or max = as fast as possible)",
    )
    p.add_argument(
        "--replay.loop", dest="replay_loop", action="store_true", help="start the capture over when it ends"
    )
    p.add_argument(
        "--replay.retime",
        dest="replay_retime",
        action="store_true",
        help="move exchange timestamps to the replay's clock (data as fresh as when recorded)",
    )
    logs.add_flags(p)
    return p


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    host, port = args.listen
    return SimulatorConfig(
        host=host,
        port=port,
        seed=args.seed,
        markets=args.markets,
        block_time=args.block_time,
        rate=args.rate,
        paused=args.paused,
        ping_interval=args.ping_interval,
        pong_timeout=args.pong_timeout,
        snapshot_delay=args.snapshot_delay,
        batch_interval=args.batch_interval,
        trading_interval=args.trading_interval,
        subaccounts=args.subaccounts,
        send_buffer_bytes=args.send_buffer,
        allow_remote_control=args.allow_remote,
        rest_rate_limit=args.rest_rate_limit,
    )


def source_from_args(args: argparse.Namespace) -> SourceFactory | None:
    """The replay source when --replay is given; None means the synthetic market."""
    if args.replay is None:
        return None
    from exporter.simulator.replay import replay_source

    # Reads the header now: a file that is not a capture fails here, naming the file.
    return replay_source(args.replay, speed=args.speed, loop=args.replay_loop, retime=args.replay_retime)


async def serve(config: SimulatorConfig, source_factory: SourceFactory | None = None) -> None:
    sim = Simulator(config, source_factory)
    try:
        with StopSignals() as signals:
            await sim.start()
            await signals.wait()
    finally:
        await sim.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    logs.configure(args.log_level, args.log_format)
    try:
        config = config_from_args(args)
        source_factory = source_from_args(args)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    try:
        asyncio.run(serve(config, source_factory))
    except OSError as exc:
        print(
            f"dydx-exporter simulate: cannot serve on {args.listen[0]}:{args.listen[1]}: {exc}",
            file=sys.stderr,
        )
        return 1
    return 0
