"""Drawing a `Frame` with Rich: a header, the status rows, one table of channels (throughput and latency),
trades by side, the error counters and the busiest markets, in that order.

Everything above the markets table is laid out first and measured; the table gets the rows that are left,
so a frame always fits the terminal (80x24 included) and a taller one shows more markets. Columns that do
not fit 80 characters appear once there is room for them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Final

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from exporter.top.frame import QUANTILES, Count, Frame, MarketRow

DIM: Final = "dim"
BAD: Final = "bold red"
WARN: Final = "yellow"
GOOD: Final = "green"
KEYS_HELP: Final = "s: sort, q: quit"


# --- numbers as people read them ------------------------------------------------------------------------


def si(value: float | None, unit: str = "") -> str:
    """12.3, 1.23k, 4.5M; "…" before there is a value (the first scrape has no rates)."""
    if value is None:
        return "…"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}{unit}"
    if value == 0:
        return f"0{unit}"
    if abs(value) < 0.01:
        return f"<0.01{unit}"
    return f"{value:.3g}{unit}"


def duration(seconds: float | None) -> str:
    """A latency or an age: 45µs, 12.3ms, 1.2s, 4m05s, 3h02m; "—" when unknown."""
    if seconds is None:
        return "—"
    if seconds < 0:
        seconds = 0.0
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3g}ms"
    if seconds < 60.0:
        return f"{seconds:.3g}s"
    if seconds < 3600.0:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def age_style(seconds: float | None, stale_after: float) -> str:
    if seconds is None:
        return DIM
    return BAD if seconds >= stale_after else ""


# --- sections -------------------------------------------------------------------------------------------


def header(frame: Frame, keys: bool) -> Text:
    """Title, time, interval and sort key first: the URL, which can be long, is what gets cut."""
    clock = time.strftime("%H:%M:%S", time.localtime(frame.wall))
    interval = f"interval {frame.interval:.1f}s" if frame.interval is not None else "first scrape"
    version = f" {frame.status.version}" if frame.status.version else ""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"dydx-exporter{version} top", style="bold")
    hint = f"  ({KEYS_HELP})" if keys else ""
    text.append(f"  {clock}  {interval}  sort {frame.sort_key}{hint}  {frame.url}", style=DIM)
    return text


def _behind(blocks: float) -> str:
    return f"{blocks:.0f} behind" if blocks >= 0 else f"{-blocks:.0f} ahead"


#: dYdX's own alarm: an indexer 100 blocks behind the chain (the protocol reference, section 7).
CHAIN_BEHIND_ALARM: Final = 100
#: Not-ready reasons shown; the rest are counted (a screen of reasons would hide everything else).
MAX_REASONS: Final = 3


def status(frame: Frame, stale_after: float) -> Text:
    s = frame.status
    text = Text()
    if s.ready is None:
        text.append("READY?", style=WARN)
    elif s.ready:
        text.append("READY", style=f"bold {GOOD}")
    else:
        text.append("NOT READY", style=BAD)
    links_style = GOOD if s.links and s.links_up == s.links else BAD
    text.append("  links ")
    text.append(f"{s.links_up}/{s.links}", style=links_style)
    subs = s.subscriptions
    text.append(f"  subs {subs.get('active', 0)} active")
    for state in ("pending", "failed"):
        text.append(f" {subs.get(state, 0)} {state}", style=WARN if subs.get(state, 0) else "")
    down = [name for name, up in sorted(s.components.items()) if not up]
    if down:
        text.append(f"  down: {', '.join(down)}", style=BAD)
    if s.cpu is not None:
        text.append(f"  cpu {s.cpu * 100:.0f}%", style=DIM)
    if s.rss_bytes is not None:
        text.append(f" rss {si(s.rss_bytes, 'B')}", style=DIM)
    text.append("\n")
    if s.block_height is None:
        text.append("block —", style=WARN)
    else:
        text.append(f"block {s.block_height:.0f} ")
        text.append(f"{duration(s.block_age)} old", style=age_style(s.block_age, stale_after))
    # Heads of issue 14, each as "N behind" the WebSocket's head (the chain's: the indexer behind it).
    if s.chain_height is not None:
        behind = s.chain_height - (s.block_height or 0.0)
        text.append(f"  chain head {s.chain_height:.0f}, indexer ")
        text.append(_behind(behind), style=BAD if behind >= CHAIN_BEHIND_ALARM else "")
    if s.rest_height is not None and s.block_height is not None:
        text.append(f"  rest {s.rest_height:.0f} {_behind(s.block_height - s.rest_height)}")
    if s.worst_link is not None:
        name, behind = s.worst_link
        text.append(f"  slowest link {name} ")
        text.append(_behind(behind), style=WARN if behind > 0 else "")
    for reason in s.reasons[:MAX_REASONS]:
        text.append(f"\nnot ready: {reason}", style=BAD)
    if len(s.reasons) > MAX_REASONS:
        text.append(f"\nnot ready: {len(s.reasons) - MAX_REASONS} more reasons (curl /readyz)", style=BAD)
    return text


def section_table(title: str) -> Table:
    """A titled table with a header rule and no borders: the most rows per line of screen."""
    return Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
    )


def channels(frame: Frame, width: int, stale_after: float) -> Table:
    wide = width >= 100
    table = section_table("Throughput and latency per channel, over the last interval")
    table.add_column("channel", no_wrap=True)
    table.add_column("upd/s", justify="right")
    if wide:
        table.add_column("frames/s", justify="right")
    table.add_column("age", justify="right")
    feed_q = QUANTILES if wide else (0.5, 0.99)
    proc_q = QUANTILES if width >= 120 else (0.99,)
    for q in feed_q:
        table.add_column(f"feed p{q * 100:g}", justify="right")
    for q in proc_q:
        table.add_column(f"proc p{q * 100:g}", justify="right")
    for row in frame.channels:
        cells: list[RenderableType] = [row.channel, si(row.updates_per_s)]
        if wide:
            cells.append(si(row.frames_per_s))
        cells.append(Text(duration(row.age), style=age_style(row.age, stale_after)))
        cells.extend(duration(row.feed[QUANTILES.index(q)]) for q in feed_q)
        cells.extend(duration(row.processing[QUANTILES.index(q)]) for q in proc_q)
        table.add_row(*cells)
    return table


def trades(frame: Frame) -> Text:
    text = Text()
    text.append("trades/s", style="bold")
    for side, value in frame.trades_per_s.items():
        text.append(f" {side} {si(value)}")
    text.append("  notional/s", style="bold")
    for side, value in frame.notional_per_s.items():
        text.append(f" {side} ${si(value)}")
    text.append("  received", style="bold")
    text.append(f" {si(frame.bytes_per_s, 'B/s')}")
    return text


def _count(count: Count) -> Text:
    text = Text()
    growing = count.delta is not None and count.delta > 0
    style = BAD if growing else WARN if count.total > 0 else DIM
    text.append(f"{count.name} {count.total:.0f}", style=style)
    if growing:
        text.append(f" (+{count.delta:.0f})", style=BAD)
    if count.parts:
        parts = ", ".join(f"{label} {total:.0f}" for label, total in count.parts)
        text.append(f" [{parts}]", style=style)
    return text


def errors(frame: Frame) -> Text:
    text = Text()
    text.append("Errors", style="bold")
    text.append(" since start (+last interval): ", style=DIM)
    crossed = frame.crossed_now
    text.append(f"crossed books now {crossed}", style=BAD if crossed else DIM)
    for count in frame.errors:
        text.append(" · ", style=DIM)
        text.append_text(_count(count))
    return text


def markets(frame: Frame, width: int, rows: int, stale_after: float) -> Table:
    shown = frame.markets[: max(rows, 0)]
    title = f"Markets: top {len(shown)} of {frame.market_count} by {frame.sort_key} (crossed first)"
    table = section_table(title)
    # The only column that may shrink (a long ticker ends in "…"), so a full row keeps its CROSSED.
    table.add_column("market", overflow="ellipsis")
    if width >= 100:
        table.add_column("status", no_wrap=True)
    for name in ("upd/s", "trades/s", "notional/s", "spread", "levels", "age"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("book", no_wrap=True)
    for row in shown:
        table.add_row(*_market_cells(row, width, stale_after))
    return table


def _market_cells(row: MarketRow, width: int, stale_after: float) -> Iterable[RenderableType]:
    yield row.market
    if width >= 100:
        yield Text(row.status.lower(), style="" if row.status in ("ACTIVE", "") else WARN)
    yield si(row.updates_per_s)
    yield si(row.trades_per_s)
    yield "$" + si(row.notional_per_s)
    yield "—" if row.spread_ratio is None else f"{row.spread_ratio * 1e4:.1f}bp"
    yield "—" if row.levels is None else f"{row.levels:.0f}"
    yield Text(duration(row.age), style=age_style(row.age, stale_after))
    if row.crossed:
        yield Text("CROSSED", style=BAD)
    elif row.crossings:
        yield Text(f"crossed {row.crossings}x", style=WARN)  # in the interval, uncrossed by the scrape
    else:
        yield Text("ok", style=DIM)


# --- whole screens --------------------------------------------------------------------------------------


def render(frame: Frame, console: Console, stale_after: float = 30.0, keys: bool = True) -> RenderableType:
    """The whole frame, sized to `console` (its width and height); `keys`: the live view's key hint."""
    width, height = console.size
    top = Group(
        header(frame, keys),
        status(frame, stale_after),
        channels(frame, width, stale_after),
        trades(frame),
        errors(frame),
    )
    used = len(console.render_lines(top, console.options.update(width=width, height=None), pad=False))
    # The markets table needs a title, a header and its rule besides its rows; keep one line spare so a
    # terminal never scrolls.
    rows = height - used - 4
    if rows < 1:
        return top
    return Group(top, markets(frame, width, rows, stale_after))


def connecting(url: str) -> Text:
    """Before the first answer."""
    text = Text()
    text.append("dydx-exporter top", style="bold")
    text.append(f"  {url}\n\nconnecting…", style=DIM)
    return text


def unreachable(url: str, error: str, attempts: int, since: float | None, last_ok: float | None) -> Text:
    """What `top` shows while it cannot read the exporter; it keeps retrying."""
    text = Text()
    text.append("dydx-exporter top", style="bold")
    text.append(f"  {url}\n\n", style=DIM)
    text.append("Cannot reach the exporter: ", style=BAD)
    text.append(error + "\n")
    down_for = f" for {duration(time.time() - since)}" if since is not None else ""
    text.append(f"Retrying (attempt {attempts}{down_for}).", style=WARN)
    if last_ok is not None:
        text.append(f" Last data at {time.strftime('%H:%M:%S', time.localtime(last_ok))}.", style=DIM)
    text.append(f"\n\n{KEYS_HELP}", style=DIM)
    return text
