"""What one frame of `top` shows and how it fits the terminal (exporter/top/frame.py, layout.py).

Scrapes here are small expositions in the exporter's own format; tests/top/test_top_live.py proves the
same view against the real exporter and simulator.
"""

from __future__ import annotations

import dataclasses

import pytest
from rich.console import Console

from exporter.top.client import Readiness
from exporter.top.frame import SORT_KEYS, MarketRow, build, sort_markets
from exporter.top.layout import duration, render, si, unreachable
from exporter.top.stats import parse

MARKETS = [f"M{i:02d}-USD" for i in range(40)]


def exposition(t: float, *, crossed: str = "", extra: str = "") -> str:
    """A scrape of an exporter `t` seconds into a steady feed: market i trades i times per second and
    applies 10 * (40 - i) book level updates per second (the busiest book trades least)."""
    lines = [
        'dydx_exporter_build_info{version="9.9.9"} 1',
        'dydx_ws_connected{connection="conn-0"} 1',
        'dydx_ws_connected{connection="conn-1"} 1',
        'dydx_subscriptions{channel="v4_trades",state="active"} 40',
        'dydx_subscriptions{channel="v4_trades",state="pending"} 2',
        'dydx_component_up{component="websocket"} 1',
        "dydx_block_height 1000",
        f"dydx_block_timestamp_seconds {1_000_000 + t - 0.5}",
        f'dydx_updates_total{{channel="v4_orderbook"}} {400 * t}',
        f'dydx_updates_total{{channel="v4_trades"}} {20 * t}',
        f'dydx_ws_messages_total{{channel="v4_trades",type="channel_data"}} {20 * t}',
        f'dydx_last_message_timestamp_seconds{{channel="v4_trades"}} {1_000_000 + t - 0.25}',
        f'dydx_last_message_timestamp_seconds{{channel="v4_orderbook"}} {1_000_000 + t}',
        f'dydx_ws_connection_failures_total{{reason="refused"}} {3 + t}',
        'dydx_ws_connection_failures_total{reason="timeout"} 0',
        "dydx_message_id_gaps_total 0",
        f'dydx_feed_latency_seconds_bucket{{channel="v4_trades",le="0.01"}} {10 * t}',
        f'dydx_feed_latency_seconds_bucket{{channel="v4_trades",le="0.1"}} {20 * t}',
        f'dydx_feed_latency_seconds_bucket{{channel="v4_trades",le="+Inf"}} {20 * t}',
    ]
    for i, market in enumerate(MARKETS):
        lines += [
            f'dydx_market_info{{market="{market}",status="ACTIVE"}} 1',
            f'dydx_trades_total{{market="{market}",side="buy"}} {i * t}',
            f'dydx_orderbook_updates_total{{market="{market}"}} {10 * (40 - i) * t}',
            f'dydx_trade_notional_total{{market="{market}",side="buy"}} {100 * i * t}',
            f'dydx_orderbook_spread_ratio{{market="{market}"}} {0.0001 * (40 - i)}',
            f'dydx_orderbook_levels{{market="{market}",side="bid"}} {i}',
            f'dydx_orderbook_crossed{{market="{market}"}} {1 if market == crossed else 0}',
            f'dydx_market_last_update_timestamp_seconds{{market="{market}",channel="v4_orderbook"}} '
            f"{1_000_000 + t - i}",
        ]
    return "\n".join(lines) + "\n" + extra


def frame(crossed: str = "", extra: str = "", sort: str = SORT_KEYS[0], ready: Readiness | None = None):
    prev = parse(exposition(10.0, crossed=crossed, extra=extra), 10.0, 1_000_010.0)
    cur = parse(exposition(12.0, crossed=crossed, extra=extra), 12.0, 1_000_012.0)
    return build("http://127.0.0.1:9741/metrics", cur, prev, ready or Readiness(True), sort)


def draw(f, width: int, height: int) -> list[str]:
    console = Console(width=width, height=height, color_system=None, force_terminal=False)
    with console.capture() as captured:
        console.print(render(f, console))
    return captured.get().splitlines()


def test_frame_numbers_are_rates_over_the_interval():
    f = frame()
    trades = {row.channel: row for row in f.channels}["v4_trades"]
    assert trades.updates_per_s == pytest.approx(20.0) and trades.frames_per_s == pytest.approx(20.0)
    assert trades.age == pytest.approx(0.25)
    assert trades.feed[0] == pytest.approx(0.01)  # half of the interval's observations are <= 10 ms
    assert f.trades_per_s == {"buy": pytest.approx(sum(range(40))), "sell": 0.0}
    busiest = f.markets[0]  # the default sort: book level updates per second
    assert (busiest.market, busiest.updates_per_s, busiest.trades_per_s) == ("M00-USD", 400.0, 0.0)
    assert f.status.links_up == 2 and f.status.subscriptions == {"active": 40, "pending": 2}
    assert f.status.block_age == pytest.approx(0.5) and f.status.version == "9.9.9"
    failures = next(c for c in f.errors if c.name == "connection failures")
    assert (failures.total, failures.delta) == (15.0, 2.0)
    assert failures.parts == (("refused", 15.0),)  # reasons that never happened are left out


def test_the_first_scrape_has_totals_but_no_rates():
    cur = parse(exposition(12.0), 12.0, 1_000_012.0)
    f = build("u", cur, None, None)
    assert f.interval is None and f.status.ready is None
    assert all(row.trades_per_s is None and row.updates_per_s is None for row in f.markets)
    text = "\n".join(draw(f, 80, 24))
    assert "first scrape" in text and "READY?" in text and "…" in text


@pytest.mark.parametrize(("width", "height"), [(80, 24), (100, 30), (132, 43), (200, 60)])
def test_a_frame_fits_the_terminal_and_fills_taller_ones_with_markets(width, height):
    lines = draw(frame(), width, height)
    assert len(lines) < height  # one line spare: a full screen never scrolls
    assert max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    for section in ("READY", "links 2/2", "Throughput and latency", "trades/s", "Errors", "Markets: top"):
        assert section in text
    shown = sum(1 for line in lines if line.startswith("M") and "-USD" in line)
    assert shown >= 3
    if height >= 43:
        assert shown >= 20 and "status" in text and "feed p90" in text and "frames/s" in text


def test_more_room_shows_more_markets():
    small, large = draw(frame(), 80, 24), draw(frame(), 80, 50)
    assert sum("-USD" in line for line in large) > sum("-USD" in line for line in small)


def test_crossed_books_come_first_and_are_flagged():
    lines = draw(frame(crossed="M03-USD"), 80, 24)
    first_market = next(line for line in lines if "-USD" in line)
    assert first_market.startswith("M03-USD") and "CROSSED" in first_market
    assert any("crossed books now 1" in line for line in lines)


def test_a_long_ticker_gives_way_so_a_crossed_row_still_says_so_at_80_columns():
    f = frame()
    long = MarketRow("FARTCOIN-USD", 12345.0, 123.0, 12345.0, 0.00123, 1234, 0.0123, True)
    lines = draw(dataclasses.replace(f, markets=(long, *f.markets)), 80, 24)
    row = next(line for line in lines if line.startswith("FARTCOIN"))
    assert row.rstrip().endswith("CROSSED") and max(map(len, lines)) <= 80, lines


def test_without_readyz_the_ready_gauge_decides():
    cur = parse(exposition(12.0, extra="dydx_ready 0\n"), 12.0, 1_000_012.0)
    assert build("u", cur, None, None).status.ready is False
    assert build("u", cur, None, Readiness(True)).status.ready is True  # /readyz, when read, wins


def test_a_book_that_crossed_and_uncrossed_between_scrapes_is_flagged_after_the_crossed_ones():
    episodes = 'dydx_orderbook_crossed_total{{market="M05-USD"}} {}\n'
    prev = parse(exposition(10.0, crossed="M07-USD", extra=episodes.format(3)), 10.0, 1_000_010.0)
    cur = parse(exposition(12.0, crossed="M07-USD", extra=episodes.format(4)), 12.0, 1_000_012.0)
    lines = draw(build("u", cur, prev, Readiness(True)), 80, 24)
    rows = [line.rstrip() for line in lines if "-USD" in line]
    assert rows[0].startswith("M07-USD") and rows[0].endswith("CROSSED")
    assert rows[1].startswith("M05-USD") and rows[1].endswith("crossed 1x")
    assert "crossed episodes 4 (+1)" in " ".join(" ".join(lines).split())  # wherever the line wraps


def test_not_ready_shows_the_exporters_reasons():
    text = "\n".join(draw(frame(ready=Readiness(False, ("v4_trades data is 40s old",))), 80, 24))
    assert "NOT READY" in text and "not ready: v4_trades data is 40s old" in text
    many = tuple(f"market M{i:02d}-USD has no book" for i in range(30))
    lines = draw(frame(ready=Readiness(False, many)), 80, 24)
    assert len(lines) < 24 and "not ready: 27 more reasons (curl /readyz)" in lines
    assert any(line.startswith("Markets: top") for line in lines)  # the reasons leave room for the rest


def test_metrics_of_newer_exporters_are_shown_only_when_present():
    plain = "\n".join(draw(frame(), 120, 40))
    assert not any(
        word in plain for word in ("chain head", "audits", "rest ", "candle gaps", "unknown fields")
    )
    extra = "\n".join([
        'dydx_chain_block_height{rpc="node-a"} 1010',
        'dydx_chain_block_height{rpc="node-b"} 1008',
        "dydx_rest_block_height 997",
        'dydx_link_block_height{connection="conn-0"} 1000',
        'dydx_link_block_height{connection="conn-1"} 990',
        'dydx_orderbook_audits_total{market="M01-USD"} 4',
        'dydx_orderbook_audit_mismatched_levels_total{market="M01-USD",kind="missing"} 2',
        'dydx_candle_gaps_total{market="M01-USD",resolution="1MIN"} 1',
        'dydx_schema_unknown_fields_total{channel="v4_trades"} 0',
    ]) + "\n"  # fmt: skip
    text = "\n".join(draw(frame(extra=extra), 120, 40))
    assert "chain head 1010, indexer 10 behind" in text
    assert "rest 997 3 behind" in text and "slowest link conn-1 10 behind" in text
    assert "audits 4" in text and "audit mismatched levels 2 [missing 2]" in text
    assert "candle gaps 1 [1MIN 1]" in text and "unknown fields 0" in text


@pytest.mark.parametrize("key", SORT_KEYS)
def test_every_sort_key_orders_the_markets(key):
    rows = list(frame(sort=key).markets)
    expected = {
        "updates": "M00-USD", "trades": "M39-USD", "notional": "M39-USD", "spread": "M00-USD",
        "age": "M39-USD", "levels": "M39-USD", "market": "M00-USD",
    }  # fmt: skip
    assert rows[0].market == expected[key]


def test_sort_puts_unknown_values_last_and_refuses_unknown_keys():
    rows = [MarketRow("B", None, None, None, None, None, None, False)]
    rows.append(MarketRow("A", 1.0, 1.0, 1, 0.1, 1, 1, False))
    assert [r.market for r in sort_markets(rows, "spread")] == ["A", "B"]
    with pytest.raises(ValueError, match="sort key"):
        sort_markets(rows, "volume")


def test_numbers_read_as_people_read_them():
    assert [si(None), si(0), si(0.004), si(12.345), si(1234.5), si(2.5e6, "B/s")] == [
        "…", "0", "<0.01", "12.3", "1.23k", "2.5MB/s",
    ]  # fmt: skip
    seconds = (None, 4.5e-5, 0.0123, 1.5, 245, 10920)
    assert [duration(s) for s in seconds] == ["—", "45µs", "12.3ms", "1.5s", "4m05s", "3h02m"]


def test_unreachable_says_why_and_that_it_retries():
    text = unreachable("http://h:1/metrics", "cannot connect to h:1: Connection refused", 3, None, None).plain
    assert "Cannot reach the exporter: cannot connect to h:1: Connection refused" in text
    assert "Retrying (attempt 3" in text
