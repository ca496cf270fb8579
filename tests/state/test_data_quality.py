"""Data-quality features without sockets: book resync decisions and how their snapshots are counted,
per-market freshness stamps, v4_subaccounts state, and the flags that turn them on."""

from __future__ import annotations

import pytest

from exporter.config import ConfigError, Settings
from exporter.feed.connection import SubKey
from exporter.feed.pool import market_keys
from exporter.feed.resync import Resyncer, ResyncPolicy
from exporter.protocol import channels as ch
from tests.helpers import metric_sum, metric_value
from tests.state.pipeline_frames import Pipeline, book_snapshot, data, market_object, subscribed, trade

ADDRESS = "dydx1" + "q" * 38
SUB = f"{ADDRESS}/0"
OTHER = f"{ADDRESS}/7"
T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Subscriptions:
    """The pool's side of the resyncer: which keys are active, and the resubscribes asked for."""

    def __init__(self, keys: list[SubKey]) -> None:
        self.active = list(keys)
        self.asked: list[SubKey] = []

    def active_keys(self, channel: str) -> list[SubKey]:
        return [k for k in self.active if k[0] == channel]

    def resync(self, key: SubKey) -> bool:
        if key not in self.active:
            return False
        self.asked.append(key)
        return True


def crossed_book(pipe: Pipeline, ticker: str, message_id: int, at: float) -> None:
    pipe.feed(subscribed(ch.ORDERBOOK, ticker, message_id, book_snapshot([("100", "1")], [("101", "1")])), at)
    pipe.feed(data(ch.ORDERBOOK, ticker, message_id + 1, {"bids": [["102", "1"]]}), at)


# --- book resync -------------------------------------------------------------------------------------------


def test_a_book_crossed_past_the_threshold_is_resubscribed_once_per_period_and_counted_as_crossed():
    clock = Clock()
    pipe = Pipeline(clock=clock)
    pipe.connect()
    crossed_book(pipe, "BTC-USD", 1, T0)
    pipe.feed(subscribed(ch.ORDERBOOK, "ETH-USD", 3, book_snapshot([("10", "1")], [("11", "1")])), T0)
    pool = Subscriptions([(ch.ORDERBOOK, "BTC-USD"), (ch.ORDERBOOK, "ETH-USD")])
    resyncer = Resyncer(ResyncPolicy(crossed_after=30.0), pool, pipe.router.books, clock=clock)

    assert pipe.router.books.crossed_books() == {"BTC-USD": T0}
    clock.now = T0 + 29.9
    assert resyncer.check() == []
    clock.now = T0 + 30.0
    assert resyncer.check() == [((ch.ORDERBOOK, "BTC-USD"), "crossed")]
    # The snapshot is itself crossed (a REST replica behind): no resubscribe loop, one per period.
    crossed_book(pipe, "BTC-USD", 10, clock.now)
    clock.now = T0 + 45.0
    assert resyncer.check() == []
    clock.now = T0 + 60.0
    assert resyncer.check() == [((ch.ORDERBOOK, "BTC-USD"), "crossed")]
    s = pipe.samples()
    assert metric_value(s, "dydx_orderbook_resyncs_total", market="BTC-USD", reason="crossed") == 1
    assert metric_value(s, "dydx_orderbook_resyncs_total", market="BTC-USD", reason="resubscribe") == 0
    assert metric_value(s, "dydx_orderbook_resyncs_total", market="ETH-USD", reason="crossed") == 0
    assert pool.asked == [(ch.ORDERBOOK, "BTC-USD")] * 2


def test_crossed_resync_off_and_inactive_books_are_left_alone():
    clock = Clock()
    pipe = Pipeline(clock=clock)
    pipe.connect()
    crossed_book(pipe, "BTC-USD", 1, T0)
    clock.now = T0 + 3600
    assert not ResyncPolicy(crossed_after=0).enabled
    assert (
        Resyncer(ResyncPolicy(crossed_after=0), Subscriptions([]), pipe.router.books, clock=clock).check()
        == []
    )
    # Crossed long enough, but its subscription is not active (link down): nothing to resubscribe.
    assert (
        Resyncer(ResyncPolicy(crossed_after=1), Subscriptions([]), pipe.router.books, clock=clock).check()
        == []
    )
    pipe.feed(subscribed(ch.ORDERBOOK, "BTC-USD", 5, book_snapshot([("100", "1")], [("101", "1")])))
    s = pipe.samples()
    assert metric_sum(s, "dydx_orderbook_resyncs_total", reason="crossed") == 0
    assert metric_value(s, "dydx_orderbook_resyncs_total", market="BTC-USD", reason="resubscribe") == 1


def test_periodic_resyncs_are_staggered_over_the_interval_and_rate_limited():
    clock = Clock()
    pipe = Pipeline(clock=clock)
    books = [(ch.ORDERBOOK, f"M{i:02d}-USD") for i in range(12)]
    pool = Subscriptions([*books, (ch.TRADES, "M00-USD")])
    resyncer = Resyncer(
        ResyncPolicy(crossed_after=0, book_interval=120.0, max_per_second=2.0),
        pool,
        pipe.router.books,
        clock=clock,
    )
    assert resyncer.check() == []  # first sight: spread over the next 120 s
    per_step: list[int] = []
    for _ in range(24):  # 2 minutes in 5 s steps
        clock.now += 5.0
        per_step.append(len(resyncer.check()))
    assert sorted(pool.asked) == books  # each book once, never the trades subscription
    assert max(per_step) <= 2  # ~10 s apart, never a burst
    # Every book comes round again one interval after its own resync.
    pool.asked.clear()
    for _ in range(24):
        clock.now += 5.0
        resyncer.check()
    assert sorted(pool.asked) == books

    # Due all at once (they were down, say) and allowed 2 per second: 1 s apart gives 2 each time.
    burst = Resyncer(
        ResyncPolicy(crossed_after=0, book_interval=1.0, max_per_second=2.0),
        pool,
        pipe.router.books,
        clock=clock,
    )
    burst.check()
    clock.now += 1.0
    assert len(burst.check()) == 2


def test_periodic_snapshot_is_counted_as_periodic():
    clock = Clock()
    pipe = Pipeline(clock=clock)
    pipe.connect()
    snap = book_snapshot([("100", "1")], [("101", "1")])
    pipe.feed(subscribed(ch.ORDERBOOK, "BTC-USD", 1, snap))
    pool = Subscriptions([(ch.ORDERBOOK, "BTC-USD")])
    resyncer = Resyncer(
        ResyncPolicy(crossed_after=0, book_interval=60.0), pool, pipe.router.books, clock=clock
    )
    resyncer.check()
    clock.now += 60.0
    assert resyncer.check() == [((ch.ORDERBOOK, "BTC-USD"), "periodic")]
    pipe.feed(
        {
            "type": "unsubscribed",
            "connection_id": "c",
            "message_id": 2,
            "channel": ch.ORDERBOOK,
            "id": "BTC-USD",
        }
    )
    # Between the unsubscribe and the fresh snapshot the book stays readable (no blank panel every hour).
    assert metric_value(pipe.samples(), "dydx_orderbook_best_price", market="BTC-USD", side="bid") == 100
    pipe.feed(subscribed(ch.ORDERBOOK, "BTC-USD", 3, snap))
    s = pipe.samples()
    assert metric_value(s, "dydx_orderbook_resyncs_total", market="BTC-USD", reason="periodic") == 1
    assert metric_value(s, "dydx_orderbook_resyncs_total", market="BTC-USD", reason="reconnect") == 0
    assert metric_value(s, "dydx_orderbook_levels", market="BTC-USD", side="bid") == 1


# --- per-market freshness ----------------------------------------------------------------------------------


def test_last_update_timestamp_per_market_and_channel_and_removed_with_the_market():
    pipe = Pipeline()
    pipe.connect()
    pipe.universe.load({"BTC-USD": market_object("BTC-USD"), "ETH-USD": market_object("ETH-USD")})
    name = "dydx_market_last_update_timestamp_seconds"
    assert metric_sum(pipe.samples(), name) == 0  # the REST list is not a frame of the feed
    snap = book_snapshot([("100", "1")], [("101", "1")])
    pipe.feed(subscribed(ch.ORDERBOOK, "BTC-USD", 1, snap), T0)
    pipe.feed(subscribed(ch.TRADES, "BTC-USD", 2, {"trades": []}), T0)
    pipe.feed(subscribed(ch.CANDLES, "BTC-USD/1MIN", 3, {"candles": []}), T0)
    pipe.feed(data(ch.ORDERBOOK, "BTC-USD", 4, {"bids": [["100", "2"]]}), T0 + 1)
    pipe.feed(data(ch.TRADES, "BTC-USD", 5, {"trades": [trade("0334f9a70000000200000005")]}), T0 + 2)
    candle = {"startedAt": "2026-03-04T19:21:00.000Z", "close": "100", "ticker": "BTC-USD"}
    pipe.feed(data(ch.CANDLES, "BTC-USD/1MIN", 6, candle), T0 + 3)
    oracle = {
        "oraclePrices": {"BTC-USD": {"oraclePrice": "100.5", "effectiveAt": "2026-03-04T19:21:07.100Z"}}
    }
    pipe.feed(data(ch.MARKETS, None, 7, oracle), T0 + 4)
    s = pipe.samples()
    assert metric_value(s, name, market="BTC-USD", channel=ch.ORDERBOOK) == T0 + 1
    assert metric_value(s, name, market="BTC-USD", channel=ch.TRADES) == T0 + 2
    assert metric_value(s, name, market="BTC-USD", channel=ch.CANDLES) == T0 + 3
    assert metric_value(s, name, market="BTC-USD", channel=ch.MARKETS) == T0 + 4
    assert metric_sum(s, name, market="ETH-USD") == 0  # nothing received for it yet: no series
    pipe.router.forget_market("BTC-USD")
    assert metric_sum(pipe.samples(), name) == 0
    pipe.feed(data(ch.CANDLES, "BTC-USD/1MIN", 8, candle), T0 + 5)  # a straggler does not bring it back
    assert metric_sum(pipe.samples(), name) == 0


# --- v4_subaccounts ----------------------------------------------------------------------------------------


def subaccount_snapshot(equity: str = "1000.5", free: str = "800.25") -> dict[str, object]:
    return {
        "subaccount": {
            "address": ADDRESS,
            "subaccountNumber": 0,
            "equity": equity,
            "freeCollateral": free,
            "openPerpetualPositions": {
                "BTC-USD": {"market": "BTC-USD", "status": "OPEN", "side": "LONG", "size": "0.1"},
                "ETH-USD": {"market": "ETH-USD", "status": "OPEN", "side": "SHORT", "size": "-2"},
            },
            "assetPositions": {"USDC": {"symbol": "USDC", "side": "LONG", "size": "900", "assetId": "0"}},
            "marginEnabled": True,
            "updatedAtHeight": "53803431",
            "latestProcessedBlockHeight": "53803431",
        },
        "orders": [
            {"id": "o1", "status": "OPEN", "ticker": "BTC-USD"},
            {"id": "o2", "status": "UNTRIGGERED", "ticker": "BTC-USD"},
            {"id": "o3", "status": "BEST_EFFORT_CANCELED", "ticker": "ETH-USD"},
        ],
        "blockHeight": "53803431",
    }


def fill(fill_id: str, side: str) -> dict[str, object]:
    return {
        "id": fill_id,
        "side": side,
        "size": "0.1",
        "price": "67000",
        "eventId": "0334f9a7",
        "ticker": "BTC-USD",
    }


@pytest.fixture
def accounts() -> Pipeline:
    pipe = Pipeline(channels=(ch.SUBACCOUNTS,))
    pipe.collector = type(pipe.collector)(version="t", channels=(ch.SUBACCOUNTS,), subaccounts=(SUB, OTHER))
    pipe.router = type(pipe.router)(pipe.collector)
    pipe.connect()
    return pipe


def test_subaccount_series_exist_from_the_start_for_configured_ids_only(accounts: Pipeline):
    s = accounts.samples()
    for sub in (SUB, OTHER):
        assert metric_value(s, "dydx_subaccount_fills_total", subaccount=sub, side="buy") == 0
        assert metric_value(s, "dydx_subaccount_open_orders", subaccount=sub) == 0
        assert metric_value(s, "dydx_subaccount_equity", subaccount=sub) is None  # no snapshot yet
    stranger = f"{ADDRESS}/1"
    accounts.feed(subscribed(ch.SUBACCOUNTS, stranger, 1, subaccount_snapshot()))
    accounts.feed(data(ch.SUBACCOUNTS, stranger, 2, {"fills": [fill("f1", "BUY")]}))
    s = accounts.samples()
    assert metric_sum(s, "dydx_subaccount_fills_total", subaccount=stranger) == 0
    assert accounts.invalid(ch.SUBACCOUNTS, "unknown_subaccount") == 2


def test_subaccount_snapshot_then_positions_orders_and_fills(accounts: Pipeline):
    accounts.feed(subscribed(ch.SUBACCOUNTS, SUB, 1, subaccount_snapshot()))
    s = accounts.samples()
    assert metric_value(s, "dydx_subaccount_equity", subaccount=SUB) == 1000.5
    assert metric_value(s, "dydx_subaccount_free_collateral", subaccount=SUB) == 800.25
    assert metric_value(s, "dydx_subaccount_open_positions", subaccount=SUB) == 2
    assert metric_value(s, "dydx_subaccount_open_orders", subaccount=SUB) == 2
    update = {
        "perpetualPositions": [{"market": "ETH-USD", "status": "CLOSED", "size": "0"}],
        "orders": [{"id": "o1", "status": "FILLED"}, {"id": "o4", "status": "BEST_EFFORT_OPENED"}],
        "fills": [fill("f1", "BUY"), fill("f2", "SELL"), fill("f3", "BUY")],
        "blockHeight": "53803432",
    }
    accounts.feed(data(ch.SUBACCOUNTS, SUB, 2, update))
    # Batched, with the fill f3 delivered again: counted once.
    batch = [
        {"fills": [fill("f3", "BUY")]},
        {"perpetualPositions": [{"market": "SOL-USD", "status": "OPEN", "size": "5"}]},
    ]
    accounts.feed(data(ch.SUBACCOUNTS, SUB, 3, batch, batched=True))
    s = accounts.samples()
    assert metric_value(s, "dydx_subaccount_open_positions", subaccount=SUB) == 2  # BTC, SOL
    assert metric_value(s, "dydx_subaccount_open_orders", subaccount=SUB) == 2  # o2, o4
    assert metric_value(s, "dydx_subaccount_fills_total", subaccount=SUB, side="buy") == 2
    assert metric_value(s, "dydx_subaccount_fills_total", subaccount=SUB, side="sell") == 1
    assert metric_value(s, "dydx_subaccount_equity", subaccount=SUB) == 1000.5  # updates carry no equity
    # A refresh replaces equity and the open sets; fills already counted stay counted.
    accounts.feed(subscribed(ch.SUBACCOUNTS, SUB, 4, subaccount_snapshot(equity="-12.5", free="0")))
    s = accounts.samples()
    assert metric_value(s, "dydx_subaccount_equity", subaccount=SUB) == -12.5
    assert metric_value(s, "dydx_subaccount_open_positions", subaccount=SUB) == 2
    assert metric_value(s, "dydx_subaccount_fills_total", subaccount=SUB, side="buy") == 2
    assert accounts.invalid(ch.SUBACCOUNTS) == 0


def test_unknown_subaccount_snapshot_and_bad_rows(accounts: Pipeline):
    accounts.feed(subscribed(ch.SUBACCOUNTS, SUB, 1, subaccount_snapshot()))
    accounts.feed(subscribed(ch.SUBACCOUNTS, SUB, 2, {}))  # the indexer does not know it (any more)
    s = accounts.samples()
    assert metric_value(s, "dydx_subaccount_equity", subaccount=SUB) is None
    assert metric_value(s, "dydx_subaccount_open_positions", subaccount=SUB) == 0
    bad = {
        "fills": [{"id": "f9", "side": "UP"}, "x"],
        "orders": [{"id": 5, "status": "OPEN"}],
        "perpetualPositions": 3,
    }
    accounts.feed(data(ch.SUBACCOUNTS, SUB, 3, bad))
    accounts.feed(data(ch.SUBACCOUNTS, SUB, 4, ["not", "an", "object"]))
    assert accounts.invalid(ch.SUBACCOUNTS, "wrong_type") == 5
    assert metric_sum(accounts.samples(), "dydx_subaccount_fills_total") == 0


# --- flags ------------------------------------------------------------------------------------------------


def settings(*argv: str) -> Settings:
    return Settings.from_sources(list(argv), {})


def test_data_quality_flags_and_their_defaults():
    s = settings()
    assert (s.crossed_resync_after, s.resync_interval, s.subaccounts) == (30.0, 0.0, ())
    assert ch.SUBACCOUNTS not in s.channels
    s = settings(
        "--orderbook.crossed-resync-after=0",
        "--orderbook.resync-interval=1h",
        f"--subaccounts={SUB},{OTHER}",
        "--subaccounts.refresh-interval=30s",
    )
    assert (s.crossed_resync_after, s.resync_interval, s.subaccount_refresh_interval) == (0.0, 3600.0, 30.0)
    assert s.subaccounts == (SUB, OTHER) and s.channels[-1] == ch.SUBACCOUNTS
    # Subaccounts are not a per-market channel: no (v4_subaccounts, ticker) subscriptions.
    assert market_keys(s, "BTC-USD") == [(ch.TRADES, "BTC-USD"), (ch.ORDERBOOK, "BTC-USD")]


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--subaccounts=dydx1short/0"], "--subaccounts"),
        ([f"--subaccounts={ADDRESS}"], "--subaccounts"),
        ([f"--subaccounts={ADDRESS}/128000"], "--subaccounts"),
        ([f"--subaccounts={ADDRESS}/-1"], "--subaccounts"),
        (["--channels=v4_trades,v4_subaccounts"], "--channels"),
        (["--orderbook.crossed-resync-after=soon"], "--orderbook.crossed-resync-after"),
        (["--orderbook.resync-interval=-5s"], "--orderbook.resync-interval"),
    ],
)
def test_bad_data_quality_flags_fail_naming_the_flag(argv: list[str], flag: str):
    with pytest.raises(ConfigError, match=f"^{flag}:"):
        settings(*argv)
