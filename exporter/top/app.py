"""`dydx-exporter top`: flags, and the loop that polls one exporter and redraws.

Full screen (Rich's alternate screen) on a terminal; `--once` prints one plain frame (no colour, no cursor
control) and exits: 0 with a frame, 1 when the exporter cannot be read, 2 for bad flags. The live view
keeps retrying an exporter it cannot reach and says so on screen. Keys: `s` cycles the markets sort key
(or its first letter picks one), `q` quits; Ctrl-C and SIGTERM quit too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import shutil
import sys
import termios
import time
import tty
from collections.abc import Iterator, Sequence
from typing import Any

from rich.console import Console
from rich.live import Live

from exporter.config import parse_duration
from exporter.lifecycle import StopSignals, cancel_and_wait
from exporter.top.client import (
    DEFAULT_URL,
    ClientOptions,
    ExporterClient,
    Poll,
    load_http_config,
    normalize_url,
    read_password_file,
)
from exporter.top.frame import SORT_KEYS, build
from exporter.top.layout import connecting, render, unreachable
from exporter.top.stats import Scrape

PROG = "dydx-exporter top"
MIN_INTERVAL = 0.1


def _duration(minimum: float) -> Any:
    """A duration flag's type; argparse names the flag in front of the message."""

    def parse(value: str) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if seconds < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}s, not {value!r}")
        return seconds

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A live view of one exporter in the terminal, read from its /metrics and /readyz: "
        "status, throughput and latency per channel, trades, errors and the busiest markets.",
        epilog="Keys: s cycles the markets sort key (or u, t, n, a, l, m pick one), q quits. "
        "NO_COLOR turns colour off; COLUMNS and LINES override the terminal size.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--url",
        default=DEFAULT_URL,
        help=f"the exporter's metrics URL (default {DEFAULT_URL}; HOST:PORT works)",
    )
    parser.add_argument(
        "--interval", type=_duration(MIN_INTERVAL), default=1.0, metavar="DURATION",
        help="time between refreshes; rates and quantiles cover it (default 1s)",
    )  # fmt: skip
    parser.add_argument("--once", action="store_true", help="print one plain-text frame and exit")
    parser.add_argument(
        "--sort",
        choices=SORT_KEYS,
        default=SORT_KEYS[0],
        help=f"markets table order (default {SORT_KEYS[0]})",
    )
    parser.add_argument(
        "--stale-after", type=_duration(0.0), default=30.0, metavar="DURATION",
        help="highlight data older than this (use the exporter's --data.stale-after; default 30s)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=_duration(MIN_INTERVAL), default=5.0, metavar="DURATION",
        help="timeout of one request (default 5s)",
    )  # fmt: skip
    auth = parser.add_argument_group("basic auth and TLS (as the exporter's --web.config.file asks)")
    auth.add_argument("--user", help="basic auth user name")
    auth.add_argument("--password-file", metavar="FILE", help="file holding the basic auth password")
    auth.add_argument("--tls.ca-file", dest="ca_file", metavar="FILE", help="CA certificate(s) to trust")
    auth.add_argument("--tls.cert-file", dest="cert_file", metavar="FILE", help="client certificate (mTLS)")
    auth.add_argument("--tls.key-file", dest="key_file", metavar="FILE", help="client certificate's key")
    auth.add_argument("--tls.server-name", dest="server_name", metavar="NAME", help="name to verify")
    auth.add_argument(
        "--tls.insecure-skip-verify", dest="insecure_skip_verify", action="store_true", default=None,
        help="do not verify the exporter's certificate",
    )  # fmt: skip
    auth.add_argument(
        "--http.config.file", dest="http_config", metavar="FILE",
        help="Prometheus http_config YAML (basic_auth, tls_config), as promtool takes; flags win over it",
    )  # fmt: skip
    return parser


@dataclasses.dataclass(frozen=True, slots=True)
class TopConfig:
    client: ClientOptions
    interval: float
    once: bool
    sort: str
    stale_after: float


def config_from_args(args: argparse.Namespace) -> TopConfig:
    """Raises ValueError naming the flag or file that is wrong."""
    fields: dict[str, Any] = load_http_config(args.http_config) if args.http_config else {}
    for name in ("user", "ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.password_file:
        fields["password"] = read_password_file(args.password_file)
    if fields.get("password") is not None and fields.get("user") is None:
        raise ValueError("a password needs --user")
    client = ClientOptions(url=normalize_url(args.url), timeout=args.timeout, **fields)
    return TopConfig(client, args.interval, args.once, args.sort, args.stale_after)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        config = config_from_args(args)
        ExporterClient(config.client)  # builds the TLS context: a bad certificate file fails here
    except ValueError as exc:
        parser.error(str(exc))
    try:
        if config.once:
            return asyncio.run(once(config))
        return asyncio.run(live(config))
    except KeyboardInterrupt:
        return 130


def plain_console() -> Console:
    """For --once: no colour, no cursor control, the terminal's size (or COLUMNS x LINES, or 80x24)."""
    size = shutil.get_terminal_size((80, 24))
    return Console(
        color_system=None, force_terminal=False, no_color=True, width=size.columns, height=size.lines,
        highlight=False, emoji=False,
    )  # fmt: skip


async def once(config: TopConfig) -> int:
    """Two scrapes `interval` apart (rates need two), one frame on stdout."""
    async with ExporterClient(config.client) as client:
        first = await client.poll()
        if first.scrape is not None:
            await asyncio.sleep(config.interval)
            second = await client.poll()
        else:
            second = first
    if second.scrape is None:
        print(f"{PROG}: cannot reach the exporter: {second.error}", file=sys.stderr)
        return 1
    console = plain_console()
    frame = build(config.client.url, second.scrape, first.scrape, second.readiness, config.sort)
    with console.capture() as captured:
        console.print(render(frame, console, config.stale_after, keys=False))
    # Tables pad their lines to the full width: scripts and diffs want them without.
    print("\n".join(line.rstrip() for line in captured.get().splitlines()))
    return 0


class Screen:
    """The live view's state between refreshes: the last two scrapes and what the user chose."""

    def __init__(self, config: TopConfig, console: Console) -> None:
        self.config = config
        self.console = console
        self.sort = config.sort
        self.prev: Scrape | None = None
        self.last: Poll | None = None
        self.failures = 0
        self.failing_since: float | None = None
        self.last_ok: float | None = None

    def take(self, poll: Poll) -> None:
        if poll.scrape is None:
            self.failures += 1
            self.failing_since = self.failing_since or time.time()
            self.prev = None  # rates across an outage would mix two exporter lives
        else:
            self.failures, self.failing_since, self.last_ok = 0, None, poll.scrape.wall
            if self.last is not None and self.last.scrape is not None:
                self.prev = self.last.scrape
        self.last = poll

    def renderable(self) -> Any:
        poll = self.last
        url = self.config.client.url
        if poll is None:
            return connecting(url)
        if poll.scrape is None:
            return unreachable(url, poll.error or "", self.failures, self.failing_since, self.last_ok)
        frame = build(url, poll.scrape, self.prev, poll.readiness, self.sort)
        return render(frame, self.console, self.config.stale_after)

    def key(self, char: str) -> bool:
        """Handles a key press; False when it asks to quit."""
        if char in ("q", "Q", "\x03"):
            return False
        if char == "s":
            self.sort = SORT_KEYS[(SORT_KEYS.index(self.sort) + 1) % len(SORT_KEYS)]
        else:
            self.sort = next((key for key in SORT_KEYS if key[0] == char), self.sort)
        return True


@contextlib.contextmanager
def keys_from_stdin(on_key: Any) -> Iterator[None]:
    """Single key presses from a terminal stdin (cbreak mode, restored on exit); nothing otherwise."""
    if not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()
    tty.setcbreak(fd)
    loop.add_reader(fd, lambda: on_key(os.read(fd, 32).decode(errors="ignore")))
    try:
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def live(config: TopConfig) -> int:
    console = Console(highlight=False, emoji=False)
    if not console.is_terminal:  # a redrawn screen makes no sense in a file or a pipe
        print(f"{PROG}: standard output is not a terminal; use --once for a plain frame", file=sys.stderr)
        return 2
    screen = Screen(config, console)
    wake = asyncio.Event()  # a key was pressed or a stop signal came: redraw (or leave) now
    with StopSignals() as signals:

        def on_key(chars: str) -> None:
            if not all(screen.key(char) for char in chars):
                signals.stop.set()
            wake.set()

        stopping = asyncio.ensure_future(signals.wait())
        stopping.add_done_callback(lambda _: wake.set())
        try:
            async with ExporterClient(config.client) as client:
                with (
                    Live(screen.renderable(), console=console, screen=True, auto_refresh=False) as view,
                    keys_from_stdin(on_key),
                ):
                    while not signals.stop.is_set():
                        deadline = time.monotonic() + config.interval
                        polling = asyncio.ensure_future(client.poll())
                        await asyncio.wait({polling, stopping}, return_when=asyncio.FIRST_COMPLETED)
                        if not polling.done():
                            await cancel_and_wait(polling)
                            break
                        screen.take(polling.result())
                        view.update(screen.renderable(), refresh=True)
                        while not signals.stop.is_set() and (left := deadline - time.monotonic()) > 0:
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(wake.wait(), left)
                            if wake.is_set() and not signals.stop.is_set():
                                wake.clear()
                                view.update(screen.renderable(), refresh=True)
        finally:
            await cancel_and_wait(stopping)
    return 0
