"""The frame router fed real frames in the reference's shapes: what each channel does to state and metrics,
and the Control events the feed acts on."""

from __future__ import annotations

import time

import pytest

from exporter.feed.sink import Connected, ServerError, Subscribed, Unsubscribed
from exporter.protocol import channels as ch
from tests.helpers import metric_sum, metric_value
from tests.state.pipeline_frames import (
    CONN,
    Pipeline,
    book_snapshot,
    data,
    iso,
    market_object,
    subscribed,
    trade,
)


@pytest.fixture
def pipe() -> Pipeline:
    p = Pipeline()
    p.connect()
    return p


def test_connected_returns_control_and_counts(pipe: Pipeline) -> None:
    result = pipe.connect()
    assert result == Connected("conn-0", CONN)
    assert metric_value(pipe.samples(), "dydx_ws_messages_total", channel="none", type="connected") == 2


def test_orderbook_reference_frames(pipe: Pipeline) -> None:
    # The three frames of reference §3.1, verbatim in shape.
    snap = subscribed(
        ch.ORDERBOOK,
        "BTC-USD",
        1,
        book_snapshot([("67012", "0.8123"), ("67011", "1.5")], [("67013", "0.25")]),
    )
    assert pipe.feed(snap) == Subscribed("conn-0", ch.ORDERBOOK, "BTC-USD", 1)
    assert pipe.feed(data(ch.ORDERBOOK, "BTC-USD", 5, {"asks": [["67013", "0"]]})) is None
    batch = [{"bids": [["67012", "0.9123"]]}, {"asks": [["67014", "2.004"]]}]
    assert pipe.feed(data(ch.ORDERBOOK, "BTC-USD", 6, batch, batched=True)) is None
    s = pipe.samples()
    assert metric_value(s, "dydx_orderbook_best_price", market="BTC-USD", side="bid") == 67012
    assert metric_value(s, "dydx_orderbook_best_price", market="BTC-USD", side="ask") == 67014
    assert metric_value(s, "dydx_orderbook_levels", market="BTC-USD", side="bid") == 2
    assert metric_value(s, "dydx_orderbook_levels", market="BTC-USD", side="ask") == 1
    assert metric_value(s, "dydx_orderbook_crossed", market="BTC-USD") == 0
    spread = metric_value(s, "dydx_orderbook_spread_ratio", market="BTC-USD")
    assert spread == pytest.approx(2 / 67013)
    # One channel_data + two batched contents = three updates; two data frames by type.
    assert metric_value(s, "dydx_updates_total", channel=ch.ORDERBOOK) == 3
    assert metric_value(s, "dydx_ws_messages_total", channel=ch.ORDERBOOK, type="channel_data") == 1
    assert metric_value(s, "dydx_ws_messages_total", channel=ch.ORDERBOOK, type="channel_batch_data") == 1
    assert metric_value(s, "dydx_ws_messages_total", channel=ch.ORDERBOOK, type="subscribed") == 1
    assert pipe.invalid() == 0


def test_crossed_book_reported_as_delivered_prices_from_uncrossed_view(pipe: Pipeline) -> None:
    t0 = time.time()
    pipe.feed(subscribed(ch.ORDERBOOK, "ETH-USD", 1, book_snapshot([("100", "1")], [("101", "1")])), t0)
    # A newer bid above the ask (id 7) crosses the book; the ask (id 1) is older, so it is dropped.
    pipe.feed(data(ch.ORDERBOOK, "ETH-USD", 7, {"bids": [["102", "3"]]}), t0 + 1)
    s = pipe.samples()
    assert metric_value(s, "dydx_orderbook_crossed", market="ETH-USD") == 1
    assert metric_value(s, "dydx_orderbook_crossed_total", market="ETH-USD") == 1
    assert metric_value(s, "dydx_orderbook_best_price", market="ETH-USD", side="bid") == 102
    assert metric_value(s, "dydx_orderbook_best_price", market="ETH-USD", side="ask") is None
    # A new ask above it uncrosses the view; the ghost ask at 101 still crosses the book as delivered.
    pipe.feed(data(ch.ORDERBOOK, "ETH-USD", 8, {"asks": [["103", "1"]]}), t0 + 2)
    s = pipe.samples()
    assert metric_value(s, "dydx_orderbook_crossed", market="ETH-USD") == 1
    assert metric_value(s, "dydx_orderbook_best_price", market="ETH-USD", side="ask") == 103
    # The ghost is removed: the episode ends after 2 s crossed.
    pipe.feed(data(ch.ORDERBOOK, "ETH-USD", 9, {"asks": [["101", "0"]]}), t0 + 3)
    s = pipe.samples()
    assert metric_value(s, "dydx_orderbook_crossed", market="ETH-USD") == 0
    assert metric_value(s, "dydx_orderbook_crossed_total", market="ETH-USD") == 1
    assert metric_value(s, "dydx_orderbook_crossed_seconds_total", market="ETH-USD") == pytest.approx(2.0)


def test_book_never_holds_bad_numbers(pipe: Pipeline) -> None:
    pipe.feed(subscribed(ch.ORDERBOOK, "BTC-USD", 1, book_snapshot([("100", "1")], [("101", "1")])))
    for i, level in enumerate(
        (
            ["100", "-1"],
            ["NaN", "1"],
            ["100", "inf"],
            ["1e999", "1"],
            [100, None],
            ["0", "1"],
            ["x", "1"],
            ["100"],
        )
    ):
        pipe.feed(data(ch.ORDERBOOK, "BTC-USD", 2 + i, {"bids": [level]}))
    s = pipe.samples()
    assert metric_value(s, "dydx_orderbook_best_price", market="BTC-USD", side="bid") == 100
    assert metric_value(s, "dydx_orderbook_levels", market="BTC-USD", side="bid") == 1
    assert pipe.invalid(ch.ORDERBOOK) == 8


def test_update_before_snapshot_and_unknown_market_counted(pipe: Pipeline) -> None:
    pipe.feed(data(ch.ORDERBOOK, "SOL-USD", 1, {"bids": [["1", "1"]]}))
    assert pipe.invalid(ch.ORDERBOOK, "unknown_market") == 1


def test_resync_reasons(pipe: Pipeline) -> None:
    snap = book_snapshot([("100", "1")], [("101", "1")])
    pipe.feed(subscribed(ch.ORDERBOOK, "BTC-USD", 1, snap))
    pipe.feed(subscribed(ch.ORDERBOOK, "BTC-USD", 2, snap))  # resubscribe on the same link
    pipe.router.link_closed("conn-0")
    s = pipe.samples()
    assert metric_value(s, "dydx_orderbook_levels", market="BTC-USD", side="bid") == 0
    assert metric_value(s, "dydx_orderbook_best_price", market="BTC-USD", side="bid") is None
    pipe.connect()
    pipe.feed(subscribed(ch.ORDERBOOK, "BTC-USD", 1, snap))
    s = pipe.samples()
    assert metric_value(s, "dydx_orderbook_resyncs_total", market="BTC-USD", reason="resubscribe") == 1
    assert metric_value(s, "dydx_orderbook_resyncs_total", market="BTC-USD", reason="reconnect") == 1
    assert metric_value(s, "dydx_orderbook_levels", market="BTC-USD", side="bid") == 1


def test_trades_deduplicated_and_snapshot_not_counted(pipe: Pipeline) -> None:
    snapshot_row = dict(trade("0334f9a60000000200000001"), createdAtHeight="53803430")
    pipe.feed(subscribed(ch.TRADES, "BTC-USD", 1, {"trades": [snapshot_row]}))
    s = pipe.samples()
    assert metric_value(s, "dydx_trades_total", market="BTC-USD", side="buy") == 0
    assert metric_value(s, "dydx_trades_total", market="BTC-USD", side="sell") == 0
    # Reference §3.2 update, then a replay of a snapshot row and of the update itself.
    update = trade("0334f9a70000000200000005")
    pipe.feed(data(ch.TRADES, "BTC-USD", 9, {"trades": [update]}))
    pipe.feed(data(ch.TRADES, "BTC-USD", 10, {"trades": [trade("0334f9a60000000200000001"), update]}))
    sell = trade("0334f9a70000000200000006", side="SELL", size="2", price="67000")
    pipe.feed(data(ch.TRADES, "BTC-USD", 11, [{"trades": [sell]}], batched=True))
    s = pipe.samples()
    assert metric_value(s, "dydx_trades_total", market="BTC-USD", side="buy") == 1
    assert metric_value(s, "dydx_trades_total", market="BTC-USD", side="sell") == 1
    assert metric_value(s, "dydx_trades_duplicate_total") == 2
    assert metric_value(s, "dydx_trade_volume_total", market="BTC-USD", side="buy") == pytest.approx(0.015)
    assert metric_value(s, "dydx_trade_notional_total", market="BTC-USD", side="sell") == pytest.approx(
        134000
    )
    assert metric_value(s, "dydx_last_trade_price", market="BTC-USD") == 67000
    assert metric_value(s, "dydx_updates_total", channel=ch.TRADES) == 3


def test_feed_latency_from_event_times(pipe: Pipeline) -> None:
    now = time.time()
    pipe.feed(subscribed(ch.TRADES, "BTC-USD", 1, {"trades": []}), now)
    pipe.feed(data(ch.TRADES, "BTC-USD", 2, {"trades": [trade("0" * 23 + "1", at=now - 2.5)]}), now)
    pipe.feed(
        data(ch.BLOCK_HEIGHT, ch.BLOCK_HEIGHT_ID, 3, {"blockHeight": "53803432", "time": iso(now - 0.2)}), now
    )
    s = pipe.samples()
    assert metric_value(s, "dydx_feed_latency_seconds_sum", channel=ch.TRADES) == pytest.approx(
        2.5, abs=0.002
    )
    assert metric_value(s, "dydx_feed_latency_seconds_bucket", channel=ch.TRADES, le="2.25") == 0
    assert metric_value(s, "dydx_feed_latency_seconds_bucket", channel=ch.TRADES, le="2.8") == 1
    assert metric_value(s, "dydx_feed_latency_seconds_count", channel=ch.BLOCK_HEIGHT) == 1
    assert metric_value(s, "dydx_block_height") == 53803432
    assert metric_value(s, "dydx_block_timestamp_seconds") == pytest.approx(now - 0.2, abs=0.002)
    assert metric_value(s, "dydx_last_message_timestamp_seconds", channel=ch.BLOCK_HEIGHT) == pytest.approx(
        now
    )
    assert metric_value(s, "dydx_processing_seconds_count", channel=ch.TRADES) == 2
    # Candles have no event time: they use the newest exchange time seen (the block at now - 0.2).
    candle = {
        "startedAt": iso(now - 30),
        "ticker": "BTC-USD",
        "resolution": "1MIN",
        "low": "67001",
        "high": "67020",
        "open": "67010",
        "close": "67013",
        "baseTokenVolume": "0.4521",
        "usdVolume": "30295.41",
        "trades": 17,
        "startingOpenInterest": "1234.5678",
        "orderbookMidPriceOpen": "67010.5",
        "orderbookMidPriceClose": None,
    }
    pipe.feed(data(ch.CANDLES, "BTC-USD/1MIN", 4, candle), now + 0.1)
    s = pipe.samples()
    assert metric_value(s, "dydx_feed_latency_seconds_sum", channel=ch.CANDLES) == pytest.approx(
        0.3, abs=0.002
    )


def test_block_height_snapshot_and_update_keys(pipe: Pipeline) -> None:
    snap = subscribed(
        ch.BLOCK_HEIGHT, ch.BLOCK_HEIGHT_ID, 1, {"height": "53803431", "time": "2026-03-04T19:21:07.100Z"}
    )
    assert pipe.feed(snap) == Subscribed("conn-0", ch.BLOCK_HEIGHT, ch.BLOCK_HEIGHT_ID, 1)
    assert metric_value(pipe.samples(), "dydx_block_height") == 53803431
    update = {"blockHeight": "53803432", "time": "2026-03-04T19:21:08.190Z"}
    pipe.feed(data(ch.BLOCK_HEIGHT, ch.BLOCK_HEIGHT_ID, 2, update))
    s = pipe.samples()
    assert metric_value(s, "dydx_block_height") == 53803432
    assert metric_value(s, "dydx_block_timestamp_seconds") == pytest.approx(1772652068.19)


def test_markets_listing_status_oracle_and_delisting(pipe: Pipeline) -> None:
    change = pipe.universe.load({"BTC-USD": market_object("BTC-USD"), "ETH-USD": market_object("ETH-USD")})
    assert set(change.listed) == {"BTC-USD", "ETH-USD"}
    assert not pipe.universe.load({"BTC-USD": market_object("BTC-USD"), "ETH-USD": market_object("ETH-USD")})
    announced = len(pipe.changes)
    # Reference §3.3 oracle update and trading diff.
    row = {"oraclePrice": "3512.4421", "effectiveAt": iso(time.time()), "effectiveAtHeight": "53803431"}
    oracle = {"ETH-USD": {**row, "marketId": 1}}
    assert pipe.feed(data(ch.MARKETS, None, 3, {"oraclePrices": oracle})) is None
    diff = {"BTC-USD": {"volume24H": "412345678.12", "trades24H": 151234, "nextFundingRate": "0.0000125"}}
    assert pipe.feed(data(ch.MARKETS, None, 4, {"trading": diff})) is None
    assert len(pipe.changes) == announced  # neither frame changed the universe
    s = pipe.samples()
    assert metric_value(s, "dydx_oracle_price", market="ETH-USD") == pytest.approx(3512.4421)
    assert metric_value(s, "dydx_market_info", market="BTC-USD", status="ACTIVE") == 1
    assert metric_value(s, "dydx_feed_latency_seconds_count", channel=ch.MARKETS) == 1
    # A status change and a listing through the channel.
    listing = {"BTC-USD": {"status": "PAUSED"}, "SOL-USD": market_object("SOL-USD", clob=7)}
    assert pipe.feed(data(ch.MARKETS, None, 5, {"trading": listing})) is None
    result = pipe.changes[-1]
    assert result.listed == ("SOL-USD",) and result.status_changed == ("BTC-USD",)
    assert result.markets == {"BTC-USD": "PAUSED", "ETH-USD": "ACTIVE", "SOL-USD": "ACTIVE"}
    s = pipe.samples()
    assert metric_value(s, "dydx_market_info", market="BTC-USD", status="PAUSED") == 1
    assert metric_value(s, "dydx_market_info", market="BTC-USD", status="ACTIVE") is None
    # REST says ETH-USD is gone: delisted, and its series are removed.
    change = pipe.universe.load({"BTC-USD": market_object("BTC-USD"), "SOL-USD": market_object("SOL-USD")})
    assert change.delisted == ("ETH-USD",)
    s = pipe.samples()
    assert metric_sum(s, "dydx_oracle_price", market="ETH-USD") == 0
    assert metric_sum(s, "dydx_market_info", market="ETH-USD") == 0


def test_markets_snapshot_change_is_announced_with_the_snapshot(pipe: Pipeline) -> None:
    pipe.universe.load({"BTC-USD": market_object("BTC-USD")})
    snap = {"markets": {"BTC-USD": market_object("BTC-USD"), "ETH-USD": market_object("ETH-USD")}}
    assert pipe.feed(subscribed(ch.MARKETS, None, 1, snap)) == Subscribed("conn-0", ch.MARKETS, None, 1)
    change = pipe.changes[-1]
    assert change.listed == ("ETH-USD",) and change.received_at is not None
    assert pipe.universe.wanted() == {"BTC-USD", "ETH-USD"}


def test_a_market_first_listed_by_the_channel_snapshot_keeps_its_oracle_price(pipe: Pipeline) -> None:
    # No REST discovery before it (REST down at start, say): the snapshot both lists the markets and
    # carries their oracle prices, and the prices must not be dropped until the next oracle update.
    snap = {
        "markets": {
            "BTC-USD": market_object("BTC-USD", oracle="67013.5"),
            "ETH-USD": market_object("ETH-USD"),
        }
    }
    received = time.time()
    pipe.feed(subscribed(ch.MARKETS, None, 1, snap), received_at=received)
    s = pipe.samples()
    assert metric_value(s, "dydx_oracle_price", market="BTC-USD") == pytest.approx(67013.5)
    assert metric_value(s, "dydx_oracle_price", market="ETH-USD") == pytest.approx(100)
    assert pipe.collector.existing_market("BTC-USD").oracle_at == received  # type: ignore[union-attr]


def test_forget_market_removes_series(pipe: Pipeline) -> None:
    pipe.feed(subscribed(ch.ORDERBOOK, "BTC-USD", 1, book_snapshot([("1", "1")], [("2", "1")])))
    pipe.feed(subscribed(ch.TRADES, "BTC-USD", 2, {"trades": []}))
    assert metric_value(pipe.samples(), "dydx_trades_total", market="BTC-USD", side="buy") == 0
    pipe.router.forget_market("BTC-USD")
    assert not [k for k in pipe.samples() if ("market", "BTC-USD") in k[1]]


def test_error_unsubscribed_and_unknown_frames(pipe: Pipeline) -> None:
    text = ch.err_could_not_fetch(ch.ORDERBOOK)
    error = {"type": "error", "message": text, "connection_id": CONN, "message_id": 0}
    result = pipe.feed({**error, "channel": ch.ORDERBOOK, "id": "BTC-USD"})
    assert result == ServerError("conn-0", text, "snapshot_fetch_failed", ch.ORDERBOOK, "BTC-USD")
    unsub = {
        "type": "unsubscribed",
        "connection_id": CONN,
        "message_id": 1,
        "channel": ch.TRADES,
        "id": "BTC-USD",
    }
    assert pipe.feed(unsub) == Unsubscribed("conn-0", ch.TRADES, "BTC-USD")
    pipe.feed({"type": "pong", "connection_id": CONN, "message_id": 1})
    pipe.feed({"type": "channel_data", "channel": "v4_nope", "message_id": 2, "contents": {}})
    s = pipe.samples()
    assert metric_value(s, "dydx_ws_errors_total", reason="snapshot_fetch_failed") == 1
    assert pipe.invalid("unknown", "unknown_type") == 1
    assert pipe.invalid("unknown", "unknown_channel") == 1


def test_message_id_gap_counted_after_grace_not_for_late_subscribed() -> None:
    pipe = Pipeline(id_grace=5.0)
    t0 = time.time()
    pipe.router.link_opened("conn-0")
    pipe.feed({"type": "connected", "connection_id": CONN, "message_id": 0}, t0)
    pipe.feed(subscribed(ch.TRADES, "BTC-USD", 1, {"trades": []}), t0)
    # id 2 is a subscribe whose snapshot is slow; 3 and 4 flow meanwhile; 2 arrives 4 s later.
    pipe.feed(data(ch.TRADES, "BTC-USD", 3, {"trades": []}), t0 + 0.1)
    pipe.feed(subscribed(ch.TRADES, "ETH-USD", 2, {"trades": []}), t0 + 4)
    # An error reusing id 4 after 4 itself: a duplicate, not a gap.
    pipe.feed(data(ch.TRADES, "BTC-USD", 4, {"trades": []}), t0 + 4.1)
    pipe.feed(
        {"type": "error", "message": "Invalid channel: x", "connection_id": CONN, "message_id": 4}, t0 + 4.2
    )
    # id 5 never comes.
    pipe.feed(data(ch.TRADES, "BTC-USD", 6, {"trades": []}), t0 + 4.3)
    pipe.feed(data(ch.TRADES, "BTC-USD", 7, {"trades": []}), t0 + 8)
    assert metric_value(pipe.samples(), "dydx_message_id_gaps_total") == 0
    pipe.feed(data(ch.TRADES, "BTC-USD", 8, {"trades": []}), t0 + 10)
    assert metric_value(pipe.samples(), "dydx_message_id_gaps_total") == 1


def test_stale_channels_and_last_data_at() -> None:
    now = time.time()
    pipe = Pipeline(stale_after=30.0)
    subscribed_channels = (ch.BLOCK_HEIGHT, ch.TRADES, ch.CANDLES)
    assert pipe.router.stale_channels(now, subscribed_channels) == [
        "v4_block_height: no data received yet",
        "v4_trades: no data received yet",
    ]  # candles may stay quiet (a market without trades has no candle updates): never a reason
    pipe.connect()
    pipe.feed(data(ch.BLOCK_HEIGHT, ch.BLOCK_HEIGHT_ID, 1, {"blockHeight": "5", "time": iso(now)}), now)
    pipe.feed(subscribed(ch.TRADES, "BTC-USD", 2, {"trades": []}), now - 10)  # a snapshot counts as data
    assert pipe.router.stale_channels(now + 1, subscribed_channels) == []
    assert pipe.router.last_data_at("conn-0", ch.BLOCK_HEIGHT) == now
    assert pipe.router.last_data_at("conn-0", ch.CANDLES) is None
    assert pipe.router.stale_channels(now + 25, subscribed_channels) == [
        "v4_trades: no data for 35.0s (stale after 30s)"
    ]
    assert pipe.router.stale_channels(now + 25, (ch.BLOCK_HEIGHT,)) == []


def test_series_created_at_zero() -> None:
    s = Pipeline().samples()
    for channel in (ch.TRADES, ch.ORDERBOOK, ch.MARKETS, ch.BLOCK_HEIGHT, ch.CANDLES):
        assert metric_value(s, "dydx_updates_total", channel=channel) == 0
        assert metric_value(s, "dydx_messages_invalid_total", channel=channel, reason="not_json") == 0
        assert metric_value(s, "dydx_subscriptions", channel=channel, state="active") == 0
    assert metric_value(s, "dydx_exporter_build_info", version="1.2.3-test") == 1
    assert metric_value(s, "dydx_ws_reconnects_total") == 0
    assert metric_value(s, "dydx_message_id_gaps_total") == 0
    assert metric_value(s, "dydx_component_up", component="websocket") == 0
    assert metric_value(s, "dydx_ws_disconnects_total", code="1006") == 0


def test_wants_market_limits_per_market_series_to_this_exporters_markets() -> None:
    pipe = Pipeline(wants_market=lambda ticker: ticker == "BTC-USD")
    pipe.connect()
    change = pipe.universe.load({t: market_object(t) for t in ("BTC-USD", "ETH-USD")})
    assert set(change.markets) == {"BTC-USD", "ETH-USD"} and pipe.universe.wanted() == {"BTC-USD"}
    oracle = {t: {"oraclePrice": "5", "effectiveAt": iso(time.time())} for t in ("BTC-USD", "ETH-USD")}
    pipe.feed(data(ch.MARKETS, None, 1, {"oraclePrices": oracle}))
    s = pipe.samples()
    assert metric_value(s, "dydx_market_info", market="BTC-USD", status="ACTIVE") == 1
    assert metric_value(s, "dydx_oracle_price", market="BTC-USD") == 5
    assert metric_sum(s, "dydx_market_info", market="ETH-USD") == 0
    assert metric_sum(s, "dydx_oracle_price", market="ETH-USD") == 0
    assert pipe.invalid() == 0  # a listed market outside the filter is not an error
