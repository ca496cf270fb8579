"""Trade de-duplication in constant memory (exporter.state.trades.TradeIds)."""

from __future__ import annotations

import random
import sys

from exporter.state.trades import TradeIds, trade_key


def event_id(height: int, tx: int = 0, event: int = 0) -> str:
    return f"{height:08x}{tx + 2:08x}{event:08x}"


def test_ids_order_like_trades() -> None:
    keys = [trade_key(event_id(10, 1, 0)), trade_key(event_id(10, 1, 1)), trade_key(event_id(10, 5, 9))]
    keys.append(trade_key(event_id(11, 0, 0)))
    assert all(isinstance(k, int) for k in keys)
    assert keys == sorted(keys, key=int)
    assert trade_key("not-an-event-id") == "not-an-event-id"
    assert trade_key("zz" * 12) == "zz" * 12  # 24 characters, not hex


def test_every_repeat_is_a_duplicate_however_old() -> None:
    tape = TradeIds(capacity=8)
    ids = [event_id(h, t) for h in range(100, 140) for t in range(3)]
    assert all(tape.add(i) for i in ids)
    assert not any(tape.add(i) for i in ids)  # long evicted from the window, still recognised
    assert len(tape) == 8


def test_out_of_order_within_the_window_is_new() -> None:
    tape = TradeIds(capacity=8)
    assert tape.add(event_id(100, 3))
    assert tape.add(event_id(100, 1))  # late, but above the floor and unseen: counted
    assert not tape.add(event_id(100, 1))


def test_snapshot_rows_are_duplicates_and_later_trades_are_new() -> None:
    tape = TradeIds(capacity=16)
    snapshot = [event_id(h, 0, e) for h in range(1000, 1500) for e in range(2)]  # 1000 rows
    random.Random(7).shuffle(snapshot)
    tape.load_snapshot(snapshot)
    assert len(tape) == 16
    # The indexer re-delivering any snapshot row (newest or oldest) as an update: all duplicates.
    assert not tape.add(event_id(1499, 0, 1))
    assert not tape.add(event_id(1000, 0, 0))
    assert tape.add(event_id(1500, 0, 0))


def test_snapshot_after_live_trades_does_not_recount() -> None:
    tape = TradeIds(capacity=4)
    live = [event_id(2000 + i) for i in range(3)]
    assert all(tape.add(i) for i in live)
    # A resubscribe's snapshot holds the trades already counted plus older ones.
    tape.load_snapshot([event_id(1990 + i) for i in range(13)])
    assert not any(tape.add(i) for i in live)
    assert tape.add(event_id(2003))


def test_memory_is_constant_once_the_window_is_full() -> None:
    tape = TradeIds(capacity=128)
    for h in range(200):
        tape.add(event_id(h))
    full = sys.getsizeof(tape._seen) + sys.getsizeof(tape._ring)
    for h in range(200, 20_000):
        tape.add(event_id(h))
    assert sys.getsizeof(tape._seen) + sys.getsizeof(tape._ring) == full
    assert len(tape) == 128


def test_ids_that_are_not_event_ids_are_deduplicated_in_the_window() -> None:
    tape = TradeIds(capacity=2)
    assert tape.add("a") and not tape.add("a")
    assert tape.add("b") and tape.add("c")  # "a" leaves the window (no order to keep it by)
    assert tape.add("a")
