"""Order book uncrossing, message-id tracking, trade dedupe windows and wire-value parsing."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from exporter.protocol.frames import TimestampParser, integer, non_negative, positive
from exporter.state.book import MAX_LEVELS_PER_SIDE, Book
from exporter.state.msgids import MessageIds
from exporter.state.trades import RecentIds
from exporter.state.universe import MarketUniverse


def book_with(bids: list[tuple[float, float, int]], asks: list[tuple[float, float, int]]) -> Book:
    book = Book()
    book.load_snapshot("conn-0", [], [], 0, 0.0)
    for price, size, mid in bids:
        book.update_bid(price, size, mid, 1.0)
    for price, size, mid in asks:
        book.update_ask(price, size, mid, 1.0)
    return book


def test_uncross_drops_older_top_level() -> None:
    book = book_with([(101.0, 1.0, 9), (99.0, 1.0, 1)], [(100.0, 1.0, 3), (102.0, 1.0, 1)])
    assert book.crossed
    assert book.best() == (101.0, 102.0)  # the ask at 100 (id 3) is older than the bid at 101 (id 9)
    book = book_with([(101.0, 1.0, 2), (99.0, 1.0, 1)], [(100.0, 1.0, 8), (102.0, 1.0, 1)])
    assert book.best() == (99.0, 100.0)


def test_uncross_equal_ids_subtracts_sizes() -> None:
    # Same message id: the smaller level goes, the larger one stays (its size reduced).
    book = book_with([(101.0, 3.0, 5), (98.0, 1.0, 1)], [(100.0, 1.0, 5), (100.5, 1.0, 5), (103.0, 1.0, 1)])
    assert book.best() == (101.0, 103.0)  # 3 - 1 - 1 = 1 left at 101
    book = book_with([(101.0, 1.0, 5), (98.0, 1.0, 1)], [(100.0, 1.0, 5), (103.0, 1.0, 1)])
    assert book.best() == (98.0, 103.0)  # equal sizes: both dropped
    # The book itself is not modified by computing the view.
    assert book.levels() == (2, 2)


def test_uncross_can_empty_a_side() -> None:
    book = book_with([(105.0, 1.0, 9)], [(100.0, 1.0, 1), (101.0, 1.0, 2)])
    assert book.best() == (105.0, None)


def crossed(book: Book) -> bool:
    return book.crossed


def test_crossing_episodes_and_time() -> None:
    book = book_with([(99.0, 1.0, 1)], [(100.0, 1.0, 1)])
    book.update_bid(100.0, 1.0, 2, 10.0)  # locked counts as crossed
    assert crossed(book) and book.crossed_total == 1
    assert book.crossed_seconds(12.5) == pytest.approx(2.5)
    book.update_bid(100.0, 0.0, 3, 13.0)
    assert not crossed(book)
    assert book.crossed_seconds(100.0) == pytest.approx(3.0)
    book.update_ask(98.0, 1.0, 4, 20.0)
    assert book.crossed_total == 2
    book.invalidate(21.0)
    assert not crossed(book) and book.levels() == (0, 0) and book.needs_resync
    assert book.crossed_seconds(30.0) == pytest.approx(4.0)
    # Never decreases, even if the clock steps back.
    assert book.crossed_seconds(0.0) == pytest.approx(4.0)


def test_side_is_capped() -> None:
    book = book_with([], [])
    for i in range(MAX_LEVELS_PER_SIDE + 10):
        book.update_bid(float(i + 1), 1.0, i, 1.0)
    assert book.levels()[0] == MAX_LEVELS_PER_SIDE
    assert book.best()[0] == float(MAX_LEVELS_PER_SIDE + 10)  # the far (lowest) bids were dropped


def test_message_ids_late_duplicate_and_lost() -> None:
    ids = MessageIds(grace_seconds=5.0)
    ids.see(0, 0.0)
    ids.see(1, 0.0)
    ids.see(4, 0.1)  # 2 and 3 are missing
    ids.see(2, 3.0)  # late subscribed
    ids.see(4, 3.1)  # duplicate (error reusing an id)
    ids.see(5, 4.0)
    assert ids.lost == 0 and ids.open_holes == 1
    ids.see(6, 5.2)
    assert ids.lost == 1 and ids.open_holes == 0
    ids.reset()
    ids.see(0, 10.0)
    ids.see(3, 10.0)
    ids.reset()  # holes of a dropped connection are not counted
    ids.see(0, 100.0)
    assert ids.lost == 1


def test_message_ids_implausible_jump_is_refused_and_mid_stream_start_accepted() -> None:
    ids = MessageIds(grace_seconds=5.0)
    assert ids.see(0, 0.0)
    assert not ids.see(10**9, 0.0)  # a corrupt id: refused, nothing recorded
    assert ids.open_holes == 0
    assert ids.see(1, 0.1) and ids.see(2, 10.0)
    assert ids.lost == 0
    joined = MessageIds(grace_seconds=5.0)
    assert joined.see(5000, 0.0)  # no `connected` seen: counting starts here
    assert joined.see(5001, 10.0) and joined.lost == 0


def test_recent_ids_window() -> None:
    recent = RecentIds(capacity=3)
    assert recent.add("a") and recent.add("b") and recent.add("c")
    assert not recent.add("a")
    assert recent.add("d")  # evicts a
    assert recent.add("a")
    assert len(recent) == 3


def test_number_parsing() -> None:
    assert positive("67012.5") == 67012.5
    assert positive(3) == 3.0
    for bad in ("0", "-1", "NaN", "inf", "1e400", "", "x", None, True, [1], {"a": 1}, float("nan")):
        assert positive(bad) is None, bad
    assert non_negative("0") == 0.0
    assert non_negative("-0.1") is None
    assert integer("53803431") == 53803431
    assert integer(151234) == 151234
    for bad in ("-1", "1.5", "²", "", True, 1.0, "9" * 30):
        assert integer(bad) is None, bad


def test_timestamp_parser() -> None:
    parse = TimestampParser()
    expected = datetime(2026, 3, 4, 19, 21, 7, 512000, tzinfo=UTC).timestamp()
    assert parse("2026-03-04T19:21:07.512Z") == pytest.approx(expected)
    assert parse("2026-03-04T19:21:08Z") == pytest.approx(expected + 0.488)
    assert parse("2026-03-04T19:21:07.512+00:00") == pytest.approx(expected)
    assert parse("2026-03-04T19:21:07.512345Z") == pytest.approx(expected + 0.000345)
    for bad in ("2026-13-04T19:21:07.512Z", "2026-03-04T19:21:99.000Z", "yesterday", "", 5, None, "x" * 100):
        assert parse(bad) is None, bad
    assert math.isfinite(parse("2026-03-04T19:21:00.000Z") or math.nan)


def test_universe_listing_status_and_bounded_status() -> None:
    universe = MarketUniverse(wants=lambda ticker: ticker != "SOL-USD")
    heard: list[object] = []
    universe.subscribe(heard.append)
    change = universe.load({"BTC-USD": {"status": "ACTIVE"}, "bad ticker": {"status": "ACTIVE"}, "X-USD": 5})
    assert change.listed == ("BTC-USD",) and heard == [change]
    change = universe.apply_trading({"BTC-USD": {"status": "WEIRD"}, "ETH-USD": {"volume24H": "1"}}, 1.0)
    assert change.status_changed == ("BTC-USD",) and universe.statuses["BTC-USD"] == "UNKNOWN"
    assert not change.listed  # a partial diff for an unknown ticker is not a listing
    assert not universe.apply_trading({"ETH-USD": {"volume24H": "1"}}, 2.0) and len(heard) == 2
    listing = {
        "SOL-USD": {"ticker": "SOL-USD", "clobPairId": "5"},
        "ETH-USD": {"ticker": "ETH-USD", "clobPairId": "1"},
    }
    assert universe.apply_trading(listing, 3.0).listed == ("SOL-USD", "ETH-USD")
    assert universe.wanted() == {"BTC-USD", "ETH-USD"}  # filtered by `wants`
    universe.apply_trading({"ETH-USD": {"status": "FINAL_SETTLEMENT"}}, 4.0)
    assert universe.wanted() == {"BTC-USD"}  # listed, but no longer traded
    change = universe.load({})
    assert change.delisted == ("BTC-USD", "SOL-USD", "ETH-USD") and universe.wanted() == frozenset()
