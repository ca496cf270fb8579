"""Ground truth, reusable: start the exporter as a user does, pause the simulator, wait until the exporter
has drained what was sent, and compare its /metrics with the simulator's GET /control/truth.

    exp = await CliExporter.start(sim, "--feed.batched")       # .venv/bin/dydx-exporter with argv
    settings = cli_settings(sim, "--feed.backoff-max=500ms")    # the same argv, for an in-process Exporter
    await pause(sim)
    samples, truth = await drained(exp.metrics_url, sim)       # exporter's updates == what was delivered
    assert not differences(samples, truth), ...
    await equal_after_traffic(exp.metrics_url, sim)            # after faults: traffic, pause, equal, resume

`sim` is anything with `base_url` and `ws_url`: an in-process Simulator or a `dydx-exporter simulate`
process. The exporter's settings always come from `Settings.from_sources(argv, env)`, so channel names and
every other option are built at run time exactly as for a user (literals in a test would be interned
strings, which once hid an identity comparison on the hot path: issue 11).
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from exporter.config import SIMULATOR_FLAGS, Settings
from exporter.protocol import channels as ch
from tests.fixtures.simulator import control
from tests.helpers import LoggedProcess, Samples, metric_sum, metric_value, scrape, wait_for

#: Short timings for a loopback simulator, as flags (Settings.for_simulator takes the same).
FAST_FLAGS = SIMULATOR_FLAGS
#: The installed console script: what `pip install` gives a user.
DYDX_EXPORTER = str(Path(sys.executable).with_name("dydx-exporter"))
#: Every channel the exporter can subscribe (v4_parent_subaccounts is the simulator's alone).
EXPORTED_CHANNELS = tuple(c for c in ch.ALL_CHANNELS if c != ch.PARENT_SUBACCOUNTS)


class HasUrls(Protocol):
    @property
    def base_url(self) -> str: ...

    @property
    def ws_url(self) -> str: ...


def exporter_argv(sim: HasUrls, *flags: str) -> list[str]:
    """argv for the exporter against `sim` on an OS-assigned loopback port; later flags win."""
    return [
        "--web.listen-address=127.0.0.1:0",
        f"--dydx.ws-url={sim.ws_url}",
        f"--dydx.rest-url={sim.base_url}",
        *FAST_FLAGS,
        *flags,
    ]


def cli_settings(sim: HasUrls, *flags: str, environ: Mapping[str, str] | None = None) -> Settings:
    """The Settings the CLI builds from `exporter_argv(sim, *flags)` (and `environ`), for an in-process
    Exporter whose tasks and sockets a test counts."""
    return Settings.from_sources(exporter_argv(sim, *flags), environ or {})


class CliExporter:
    """`dydx-exporter [argv]` as a child process, its JSON log collected; `url` once it serves."""

    def __init__(self, process: LoggedProcess, url: str) -> None:
        self.process = process
        self.url = url
        self.metrics_url = url + "/metrics"

    @classmethod
    async def start(
        cls,
        sim: HasUrls,
        *flags: str,
        env: Mapping[str, str] | None = None,
        argv: Sequence[str] | None = None,
    ) -> CliExporter:
        """`argv` replaces the default `exporter_argv(sim, *flags)` (e.g. only `--config.file=...`).
        DYDX_EXPORTER_* variables of the test's own environment are not passed on; `env` adds some."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DYDX_EXPORTER_")}
        environ.update(env or {})
        args = list(argv) if argv is not None else exporter_argv(sim, *flags)
        proc = await asyncio.create_subprocess_exec(
            DYDX_EXPORTER,
            *args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=environ,
        )
        process = LoggedProcess(proc)
        try:
            started = await process.wait_event("exporter_started")
        except BaseException:
            await process.stop()
            raise
        return cls(process, str(started["url"]))

    def invalid_logs(self) -> list[dict[str, Any]]:
        return [e for e in self.process.events if e.get("event") == "frame_invalid"]

    async def stop(self) -> int:
        return await self.process.stop()


# --- the simulator's two views ---------------------------------------------------------------------------


async def published(sim: HasUrls, session: aiohttp.ClientSession | None = None) -> Samples:
    """The simulator's /metrics: what it published, sent, accepted, rejected and received (counters)."""
    return await scrape(sim.base_url + "/metrics", session)


async def ground_truth(
    sim: HasUrls, markets: Iterable[str] = (), session: aiohttp.ClientSession | None = None
) -> dict[str, Any]:
    """GET /control/truth: what a perfect consumer holds now (exporter.simulator.truth.Ledger)."""
    query = "&".join(f"market={m}" for m in markets)
    path = "/control/truth" + (f"?{query}" if query else "")
    truth: dict[str, Any] = await control(sim, "GET", path, session=session)
    return truth


async def pause(sim: HasUrls, session: aiohttp.ClientSession | None = None) -> None:
    await control(sim, "POST", "/control/pause", session=session)


async def resume(sim: HasUrls, session: aiohttp.ClientSession | None = None) -> None:
    await control(sim, "POST", "/control/resume", session=session)


# --- drain and compare -----------------------------------------------------------------------------------


def update_differences(samples: Samples, truth: Mapping[str, Any]) -> list[str]:
    """Per channel, dydx_updates_total against the updates the simulator delivered to subscribers."""
    delivered = truth["updates_delivered"]
    return [
        f"dydx_updates_total{{channel={c}}} {got:.0f} != delivered {delivered[c]}"
        for c in EXPORTED_CHANNELS
        if (got := metric_sum(samples, "dydx_updates_total", channel=c)) != delivered[c]
    ]


async def drained(
    metrics_url: str, sim: HasUrls, markets: Iterable[str] = (), timeout: float = 20.0
) -> tuple[Samples, dict[str, Any]]:
    """With the simulator paused, in a clean run: wait until every channel's dydx_updates_total equals the
    updates the simulator delivered (no frame may be lost), and return the exporter's samples and the
    truth (of `markets`, default all) read in that same poll, so a batch flushed later is in neither."""
    async with aiohttp.ClientSession() as session:
        last: tuple[Samples, dict[str, Any]] | None = None

        async def done() -> bool:
            nonlocal last
            samples = await scrape(metrics_url, session)
            last = samples, await ground_truth(sim, markets, session)
            return not update_differences(*last)

        try:
            await wait_for(done, timeout=timeout, interval=0.1)
        except AssertionError:
            assert last is not None
            raise AssertionError(
                f"the exporter did not drain within {timeout}s: {update_differences(*last)}"
            ) from None
        assert last is not None
        return last


def _float(text: str | None) -> float | None:
    return None if text is None else float(text)


def resnapshots(samples: Samples) -> float:
    """Reconnects plus order book re-snapshots: each replaces state the updates built."""
    reconnects = metric_sum(samples, "dydx_ws_reconnects_total")
    return reconnects + metric_sum(samples, "dydx_orderbook_resyncs_total")


def last_trade_ids(truth: Mapping[str, Any]) -> dict[str, str | None]:
    """Per market, the id of the last trade delivered (for `differences(..., trades_since=)`)."""
    return {t: (m["last_trade"] or {}).get("id") for t, m in truth["markets"].items()}


def differences(
    samples: Samples,
    truth: Mapping[str, Any],
    counters: bool = True,
    trades_since: Mapping[str, str | None] | None = None,
) -> list[str]:
    """Everything in which the exporter's samples differ from the truth, for every market of the truth.

    Always: book levels per side, best bid and ask of books not crossed as delivered, oracle price, last
    trade price, block height, subaccount equity, free collateral and open orders. With `counters` (a run
    in which no frame was lost): trade counts, volume and notional per side, order book level updates per
    market (dydx_orderbook_updates_total), dydx_updates_total per channel, dydx_messages_invalid_total == 0,
    and no reconnect or book re-snapshot (each would replace state that updates built with a fresh
    snapshot, hiding how updates were applied).

    `trades_since` (from last_trade_ids, taken once recovered from faults that drop connections): the last
    trade price only of markets that traded since, because a trade queued to a connection the fault cut
    counts as delivered but never arrived, and no snapshot repairs a last trade.
    """
    out: list[str] = []

    def check(what: str, got: float | None, want: float | None, exact: bool = True) -> None:
        same = (
            got == want
            if exact or got is None or want is None
            else math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
        )
        if not same:
            out.append(f"{what}: exporter {got!r}, truth {want!r}")

    height = truth["block_height"]
    check("dydx_block_height", metric_value(samples, "dydx_block_height"), height and float(height))
    for ticker, market in truth["markets"].items():
        book = market["book"]
        for side, levels in (("bid", book["bids"]), ("ask", book["asks"])):
            got = metric_value(samples, "dydx_orderbook_levels", market=ticker, side=side)
            check(f"{ticker} {side} levels", got, float(len(levels)))
        if not market["crossed"]:
            for side, best in (("bid", market["best_bid"]), ("ask", market["best_ask"])):
                got = metric_value(samples, "dydx_orderbook_best_price", market=ticker, side=side)
                check(f"{ticker} best {side}", got, _float(best))
        check(
            f"{ticker} oracle",
            metric_value(samples, "dydx_oracle_price", market=ticker),
            _float(market["oracle_price"]),
        )
        last = market["last_trade"]
        if trades_since is None or (last and last["id"]) != trades_since.get(ticker):
            got = metric_value(samples, "dydx_last_trade_price", market=ticker)
            check(f"{ticker} last trade", got, _float(last and last["price"]))
        if counters:
            got = metric_value(samples, "dydx_orderbook_updates_total", market=ticker) or 0.0
            check(f"{ticker} dydx_orderbook_updates_total", got, float(market["orderbook_updates"]))
            for side, tally in market["trades"].items():
                label = side.lower()
                for name, want, exact in (
                    ("dydx_trades_total", float(tally["count"]), True),
                    ("dydx_trade_volume_total", float(tally["volume"]), False),
                    ("dydx_trade_notional_total", float(tally["notional"]), False),
                ):
                    got = metric_value(samples, name, market=ticker, side=label) or 0.0
                    check(f"{ticker} {name} {label}", got, want, exact)
    for sub_id, sub in truth["subaccounts"].items():
        for name, expected in (
            ("dydx_subaccount_equity", _float(sub["equity"])),
            ("dydx_subaccount_free_collateral", _float(sub["free_collateral"])),
            ("dydx_subaccount_open_orders", float(sub["open_orders"])),
        ):
            check(f"{sub_id} {name}", metric_value(samples, name, subaccount=sub_id), expected)
    if counters:
        out += update_differences(samples, truth)
        check("dydx_messages_invalid_total", metric_sum(samples, "dydx_messages_invalid_total"), 0.0)
        check("reconnects and book re-snapshots", resnapshots(samples), 0.0)
    return out


def report(problems: Sequence[str], limit: int = 25) -> str:
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return (
        f"{len(problems)} difference(s) from the simulator's truth:\n  "
        + "\n  ".join(problems[:limit])
        + more
    )


class Resnapshotted(AssertionError):
    """The exporter reconnected or re-snapshotted a book while the comparison waited: its state is then
    the fresh snapshot's, which says nothing about how it applied updates (the pause itself silences the
    links, and the exporter drops a silent link after --feed.silence-timeout)."""


async def wait_equal(
    metrics_url: str,
    sim: HasUrls,
    counters: bool = True,
    trades_since: Mapping[str, str | None] | None = None,
    timeout: float = 15.0,
    session: aiohttp.ClientSession | None = None,
) -> dict[str, Any]:
    """With the simulator paused: wait until `differences` is empty (the exporter has caught up with what
    was sent) and return that truth; fail listing the differences of the last attempt, or raise
    Resnapshotted as soon as the exporter re-snapshots."""
    problems: list[str] = []
    before: float | None = None
    own = session is None
    http = session or aiohttp.ClientSession()

    async def equal() -> Any:
        nonlocal problems, before
        samples = await scrape(metrics_url, http)
        truth = await ground_truth(sim, session=http)
        if before is None:
            before = resnapshots(samples)
        elif resnapshots(samples) != before:
            raise Resnapshotted(f"re-snapshotted before it was equal: {report(problems)}")
        problems = differences(samples, truth, counters, trades_since)
        return None if problems else truth

    try:
        found: dict[str, Any] = await wait_for(equal, timeout=timeout, interval=0.1)
    except Resnapshotted:
        raise
    except AssertionError:
        raise AssertionError(f"not equal within {timeout}s: {report(problems)}") from None
    finally:
        if own:
            await http.close()
    return found


async def wait_blocks(sim: HasUrls, height: int, session: aiohttp.ClientSession | None = None) -> None:
    """Until the truth's block height reaches `height`."""

    async def reached() -> bool:
        truth = await ground_truth(sim, session=session)
        return bool((truth["block_height"] or 0) >= height)

    await wait_for(reached, timeout=10, interval=0.1, message=f"block height {height}")


async def equal_after_traffic(
    metrics_url: str,
    sim: HasUrls,
    counters: bool = False,
    blocks: int = 5,
    attempts: int = 3,
    session: aiohttp.ClientSession | None = None,
) -> dict[str, Any]:
    """After faults: `blocks` blocks of clean traffic, pause, and the exporter must equal the truth; the
    simulator is resumed afterwards. Without `counters` (frames queued to a connection a fault cut are lost
    for good) and judging last trades only of markets that traded in those blocks. A comparison that a
    re-snapshot made void is run again, up to `attempts` times."""
    for attempt in range(attempts):
        truth = await ground_truth(sim, session=session)
        since = last_trade_ids(truth)
        await wait_blocks(sim, (truth["block_height"] or 0) + blocks, session)
        await pause(sim, session)
        try:
            return await wait_equal(metrics_url, sim, counters, since, timeout=10, session=session)
        except Resnapshotted:
            if attempt == attempts - 1:
                raise
        finally:
            await resume(sim, session)
    raise AssertionError("unreachable")
