"""Off-shape order book and v4_markets contents are counted under the reason a user alerts on
(dydx_messages_invalid_total{channel,reason}), the same through both decode paths, and never touch the
book: an update object carries one or both of its two parts, a level is a price > 0 and a size >= 0."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.protocol import channels as ch
from tests.helpers import metric_value
from tests.state.pipeline_frames import Pipeline, book_snapshot, data, iso, market_object, subscribed

NOW = 1_800_000_000.0
AT = iso(NOW - 1)


def pipeline(typed: bool) -> Pipeline:
    pipe = Pipeline(typed=typed)
    pipe.connect()
    pipe.universe.load({"BTC-USD": market_object("BTC-USD")})  # REST discovery lists it first
    pipe.feed(subscribed(ch.MARKETS, None, pipe.mid(), {"markets": {"BTC-USD": market_object("BTC-USD")}}))
    snapshot = book_snapshot([("100", "1")], [("101", "1")])
    pipe.feed(subscribed(ch.ORDERBOOK, "BTC-USD", pipe.mid(), snapshot))
    return pipe


def assert_counted(pipe: Pipeline, channel: str, expected: dict[str, float]) -> None:
    """Exactly `expected` (reason → count) is counted invalid on `channel`, nothing else."""
    assert {reason: pipe.invalid(channel, reason) for reason in expected} == expected
    assert pipe.invalid(channel) == sum(expected.values())


def book(pipe: Pipeline) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    held = pipe.router.books.books["BTC-USD"]
    return sorted(held.bids.sizes.items()), sorted(held.asks.sizes.items())


#: (update, reason → count, the levels it still applies to the asks)
BOOK_UPDATES: list[tuple[Any, dict[str, float], list[tuple[float, float]]]] = [
    ({}, {"missing_field": 1}, []),
    ({"bids": None, "asks": None}, {"missing_field": 1}, []),
    ("bids", {"wrong_type": 1}, []),
    ({"bids": "100"}, {"wrong_type": 1}, []),
    ({"bids": [["100"]]}, {"wrong_type": 1}, []),
    ({"asks": [{"price": "101", "size": "2"}]}, {"wrong_type": 1}, []),
    ({"bids": [["-1", "1"]]}, {"bad_number": 1}, []),
    ({"bids": [["99", "-1"]]}, {"bad_number": 1}, []),
    ({"asks": [["102", "nan"], ["103", "2"]], "bids": [["0", "1"]]}, {"bad_number": 2}, [(103.0, 2.0)]),
]


@pytest.mark.parametrize("typed", [True, False], ids=["typed", "dict"])
@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
@pytest.mark.parametrize(("contents", "expected", "applied"), BOOK_UPDATES)
def test_off_shape_book_updates_are_counted_by_reason(
    contents: Any,
    expected: dict[str, float],
    applied: list[tuple[float, float]],
    batched: bool,
    typed: bool,
) -> None:
    pipe = pipeline(typed)
    bids, asks = book(pipe)
    frame = data(ch.ORDERBOOK, "BTC-USD", pipe.mid(), [contents] if batched else contents, batched=batched)
    pipe.feed(frame, NOW)
    assert_counted(pipe, ch.ORDERBOOK, expected)
    assert book(pipe) == (bids, [*asks, *applied])


def test_a_snapshot_keeps_its_valid_levels_and_counts_the_others() -> None:
    pipe = pipeline(typed=True)
    levels = {
        "bids": [{"price": "100", "size": "1"}, ["99", "1"], {"price": "98"}, {"price": "-1", "size": "1"}],
        "asks": [{"price": "101", "size": "0"}, {"price": "102", "size": "x"}],
    }
    pipe.feed(subscribed(ch.ORDERBOOK, "BTC-USD", pipe.mid(), levels), NOW)
    assert_counted(pipe, ch.ORDERBOOK, {"wrong_type": 1, "bad_number": 3})
    assert book(pipe) == ([(100.0, 1.0)], [])
    pipe.feed(subscribed(ch.ORDERBOOK, "BTC-USD", pipe.mid(), {"asks": "x"}), NOW)  # no bids: none held
    assert_counted(pipe, ch.ORDERBOOK, {"wrong_type": 2, "bad_number": 3})
    assert book(pipe) == ([], [])


MARKETS_UPDATES: list[tuple[Any, dict[str, float]]] = [
    ({}, {"missing_field": 1}),
    ({"oraclePrices": None}, {"missing_field": 1}),
    ("oraclePrices", {"wrong_type": 1}),
    ({"oraclePrices": "x"}, {"wrong_type": 1}),
    ({"trading": ["BTC-USD"]}, {"wrong_type": 1}),
    ({"oraclePrices": {"BTC-USD": {"oraclePrice": "-1", "effectiveAt": AT}}}, {"bad_number": 1}),
    ({"oraclePrices": {"BTC-USD": "101"}, "trading": "x"}, {"wrong_type": 2}),
]


@pytest.mark.parametrize("typed", [True, False], ids=["typed", "dict"])
@pytest.mark.parametrize(("contents", "expected"), MARKETS_UPDATES)
def test_off_shape_markets_updates_are_counted_by_reason(
    contents: Any, expected: dict[str, float], typed: bool
) -> None:
    pipe = pipeline(typed)
    pipe.feed(data(ch.MARKETS, None, pipe.mid(), contents), NOW)
    assert_counted(pipe, ch.MARKETS, expected)
    assert metric_value(pipe.samples(), "dydx_oracle_price", market="BTC-USD") == 100


@pytest.mark.parametrize("typed", [True, False], ids=["typed", "dict"])
def test_a_markets_update_may_carry_both_parts(typed: bool) -> None:
    pipe = pipeline(typed)
    both = {
        "oraclePrices": {"BTC-USD": {"oraclePrice": "101.5", "effectiveAt": AT}},
        "trading": {"BTC-USD": {"status": "PAUSED"}},
    }
    pipe.feed(data(ch.MARKETS, None, pipe.mid(), both), NOW)
    samples = pipe.samples()
    assert_counted(pipe, ch.MARKETS, {})
    assert metric_value(samples, "dydx_oracle_price", market="BTC-USD") == 101.5
    assert metric_value(samples, "dydx_market_info", market="BTC-USD", status="PAUSED") == 1
