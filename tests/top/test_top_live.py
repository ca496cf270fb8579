"""`dydx-exporter top` against a live simulator and exporter (real CLI processes on loopback), read from a
tmux pane the way a user reads it: sections with live numbers, faults on screen within two refreshes,
keys, NO_COLOR, `--once` as text, an unreachable exporter, basic auth and TLS.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.fixtures.exporter import start_exporter_process
from tests.fixtures.simulator import control, simulator_ws_url, start_simulator_process
from tests.helpers import LoggedProcess, free_port, kill_if_running
from tests.stack.certs import CertificateAuthority
from tests.stack.test_webconfig import PASSWORD, bcrypt_hash, write_config
from tests.top.tmux import Pane

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

REPO = str(Path(__file__).resolve().parents[2])
#: Colour SGR parameters (foreground 30-37, 90-97, 38;...): what NO_COLOR must remove. Bold may stay.
COLOUR = re.compile(r"\x1b\[[0-9;]*(?:3[0-8]|9[0-7])(?:;[0-9;]*)?m")


def top_argv(*flags: str) -> list[str]:
    return [sys.executable, "-m", "exporter", "top", *flags]


def top_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    return {**env, **extra}


async def run_once(*flags: str, **env: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *top_argv("--once", *flags), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=top_env(**env), cwd=REPO,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await kill_if_running(proc)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


#: A number as top draws it: 12.3, 1.23k, 4.5M.
SI = r"([\d.]+)([kM]?)"


def si_value(match: re.Match[str]) -> float:
    return float(match.group(1)) * {"": 1, "k": 1e3, "M": 1e6}[match.group(2)]


def number(screen: str, pattern: str) -> float:
    """The first number after `pattern` on the screen."""
    found = re.search(pattern + r"\s+" + SI, screen)
    assert found, f"{pattern!r} not on screen:\n{screen}"
    return si_value(found)


def channel_rate(screen: str, channel: str) -> float | None:
    """upd/s of `channel`'s row, None while it shows no rate yet ("…" on the first scrape)."""
    found = re.search(rf"^{channel}\s+{SI}\s", screen, re.MULTILINE)
    return si_value(found) if found else None


async def exporter_url(process: LoggedProcess) -> str:
    port = (await process.wait_event("web_listening", timeout=30))["port"]
    return f"http://127.0.0.1:{port}/metrics"


async def start_stack(*exporter_flags: str) -> tuple[LoggedProcess, LoggedProcess, Any]:
    """A simulator (20 markets, pings every second) and an exporter fed by it, both real processes."""
    simulator = await start_simulator_process("--markets", "20", "--ping-interval", "1")
    try:
        ws_url = await simulator_ws_url(simulator)
        base_url = ws_url.replace("ws://", "http://").removesuffix("/v4/ws")
        sim = SimpleNamespace(ws_url=ws_url, base_url=base_url)  # what the fixtures' helpers read
        exporter = await start_exporter_process(sim, *exporter_flags)
    except BaseException:
        await simulator.close()
        raise
    return simulator, exporter, sim


async def test_live_view_shows_live_numbers_and_faults_within_two_refreshes():
    simulator, exporter, sim = await start_stack()
    panes: list[Pane] = []
    try:
        url = await exporter_url(exporter)
        small = await Pane(top_argv("--url", url), width=80, height=24, env=top_env(), cwd=REPO).start()
        panes.append(small)
        plain = Pane(top_argv("--url", url), width=132, height=43, env=top_env(NO_COLOR="1"), cwd=REPO)
        panes.append(await plain.start())

        def flowing(screen: str) -> bool:
            rates = [channel_rate(screen, c) for c in ("v4_orderbook", "v4_trades", "v4_markets")]
            return "READY" in screen and "NOT READY" not in screen and all(r and r > 0 for r in rates)

        screen = await small.wait_text(flowing, 30, "live rates on every data channel, exporter ready")
        for section in ("links 1/1", "subs ", "block ", "Throughput and latency", "feed p99",
                        "trades/s buy", "Errors since start", "gaps 0", "Markets: top"):  # fmt: skip
            assert section in screen, f"{section!r} missing:\n{screen}"
        assert number(screen, "block") > 0 and number(screen, "subs") >= 42  # 20 books, 20 trades, 2 feeds
        lines = screen.rstrip("\n").splitlines()
        assert len(lines) <= 24 and max(map(len, lines)) <= 80
        market_rows = [line for line in lines if re.match(r"[A-Z0-9]+-USD\s", line)]
        assert len(market_rows) >= 3, screen
        # Busiest books first by default: order book level updates per second.
        assert "by updates" in screen and re.search(r"^market\s+upd/s\s", screen, re.MULTILINE), screen

        # More room shows every market and the wide columns; NO_COLOR leaves out the colour codes the
        # other pane has.
        wide = await plain.wait_text(
            lambda s: "frames/s" in s and "status" in s and "USD" in s, 20, "wide view"
        )
        assert sum(bool(re.match(r"[A-Z0-9]+-USD\s", line)) for line in wide.splitlines()) == 20
        assert not COLOUR.search(await plain.text(escapes=True))
        assert COLOUR.search(await small.text(escapes=True))

        # Keys: `n` sorts the markets by notional, `s` moves on to the next key.
        await small.keys("n")
        await small.wait_text(lambda s: "by notional" in s and "sort notional" in s, 5, "sorted by notional")
        await small.keys("s")
        await small.wait_text(lambda s: "by spread" in s, 5, "sorted by spread")

        # Faults through the simulator's control API show within two refreshes.
        # The simulator's crossing lasts until trades eat the crossed asks, sometimes less than a refresh:
        # the row says CROSSED while it lasts, "crossed 1x" for the interval in which it began and ended.
        await control(sim, "POST", "/control/faults", {"kind": "cross", "market": "BTC-USD", "seconds": 60})
        screen = await small.within_refreshes(
            lambda s: re.search(r"^BTC-USD\s.*(CROSSED|crossed 1x)$", s, re.MULTILINE),
            2,
            "a crossed BTC-USD book",
        )
        assert "crossed episodes 1" in screen
        await control(
            sim, "POST", "/control/faults", {"kind": "stall", "channel": "v4_trades", "seconds": 60}
        )
        screen = await small.within_refreshes(
            lambda s: channel_rate(s, "v4_trades") == 0 and (channel_rate(s, "v4_orderbook") or 0) > 0,
            2, "v4_trades stalled while the book flows",
        )  # fmt: skip

        # --once against the same exporter: one plain frame, no escape sequences, 80x24 by default.
        status, out, err = await run_once("--url", url, "--interval", "500ms")
        assert status == 0, err
        assert "\x1b" not in out and "\r" not in out
        lines = out.rstrip("\n").splitlines()
        assert len(lines) <= 24 and max(map(len, lines)) <= 80, out
        assert re.search(r"^v4_trades\s+0\s", out, re.MULTILINE), out  # still stalled
        assert re.search(r"crossed episodes [1-9]", out), out  # the book may have uncrossed by now
        assert channel_rate(out, "v4_orderbook")

        await small.keys("q")
        await small.wait_text(lambda s: "[exited 0]" in s, 10, "q quits with status 0")
    finally:
        for pane in panes:
            await pane.close()
        await exporter.stop()
        await simulator.stop()


async def test_unreachable_exporter_is_said_plainly_and_retried_until_it_answers_with_tls_and_auth(tmp_path):
    """top starts before the exporter (HTTPS + basic auth), says it cannot reach it and keeps retrying,
    then shows it once it is up; --once explains each wrong client option."""
    ca = CertificateAuthority.create(tmp_path, "ca")
    server = ca.issue(tmp_path, "exporter", server=True, sans=("127.0.0.1",))
    web_config = write_config(
        tmp_path,
        {
            "tls_server_config": {"cert_file": str(server.cert_file), "key_file": str(server.key_file)},
            "basic_auth_users": {"operator": bcrypt_hash(PASSWORD)},
        },
    )
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    port = free_port()
    url = f"https://127.0.0.1:{port}/metrics"
    auth = ("--user", "operator", "--password-file", str(password_file), "--tls.ca-file", str(ca.cert_file))

    status, out, err = await run_once("--url", url, *auth)
    assert (status, out) == (1, "")
    assert f"cannot reach the exporter: cannot connect to 127.0.0.1:{port}" in err

    pane = await Pane(top_argv("--url", url, *auth), width=80, height=24, env=top_env(), cwd=REPO).start()
    simulator = exporter = None
    try:
        await pane.wait_text(lambda s: "Retrying (attempt 3" in s, 20, "retries, counted")
        screen = await pane.text()
        assert f"Cannot reach the exporter: cannot connect to 127.0.0.1:{port}" in screen

        simulator, exporter, _ = await start_stack(
            f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={web_config}"
        )
        screen = await pane.wait_text(
            lambda s: "Cannot reach" not in s and channel_rate(s, "v4_orderbook"), 30, "the exporter's frame"
        )
        assert "links 1/1" in screen

        # The same through a Prometheus http_config file, as promtool and Prometheus take it.
        http_config = write_config(
            tmp_path,
            {
                "basic_auth": {"username": "operator", "password_file": password_file.name},
                "tls_config": {"ca_file": ca.cert_file.name},
            },
            name="http.yml",
        )
        status, out, err = await run_once("--url", url, "--http.config.file", str(http_config))
        assert status == 0 and "Markets: top" in out, err

        # Each wrong client option is named.
        wrong = tmp_path / "wrong"
        wrong.write_text("hunter2")
        cases = [
            (("--tls.ca-file", str(ca.cert_file)), "401 Unauthorized (basic auth: --user, --password-file)"),
            (("--tls.ca-file", str(ca.cert_file), "--user", "operator", "--password-file", str(wrong)),
             "401 Unauthorized (wrong --user or password)"),
            (("--user", "operator", "--password-file", str(password_file)), "pass --tls.ca-file"),
        ]  # fmt: skip
        results = await asyncio.gather(*(run_once("--url", url, *flags) for flags, _ in cases))
        for (flags, message), (status, _out, err) in zip(cases, results, strict=True):
            assert status == 1 and message in err, (flags, err)
        status, _, err = await run_once("--url", url, "--tls.insecure-skip-verify", *auth[:4])
        assert status == 0, err
    finally:
        await pane.close()
        if exporter is not None:
            await exporter.stop()
        if simulator is not None:
            await simulator.stop()
