"""ReplaySource against the EventSource seam, on the capture that ships with the tests (recorded from the
simulator by tests/data/make_capture.py, with the simulator's own REST views at the end as ground truth)."""

from __future__ import annotations

import gzip
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from exporter.protocol import channels as ch
from exporter.simulator import formats
from exporter.simulator.capture import (
    CaptureError,
    CaptureWriter,
    FrameRecord,
    LinkEvent,
    Trailer,
    read_header,
    read_records,
)
from exporter.simulator.replay import ReplaySource
from tests.capture.expect import (
    SHIPPED,
    SHIPPED_TRUTH,
    RecordingPublisher,
    first_snapshots,
    frames,
    recorded_updates,
    write_capture,
)
from tests.state.pipeline_frames import data, subscribed

pytestmark = pytest.mark.timeout(30)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def play_all(source: ReplaySource, clock: FakeClock | None = None, max_ticks: int = 100_000) -> int:
    """Tick the source as the server does until it has published the whole capture; returns the ticks."""
    for tick in range(max_ticks):
        if source.finished:
            return tick
        if clock is not None:
            clock.now += source.tick_interval
        source.advance(0.0)
    raise AssertionError("replay never finished")


@pytest.fixture(scope="module")
def truth() -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(SHIPPED_TRUTH.read_bytes())
    return loaded


def test_shipped_capture_is_complete_and_lost_nothing() -> None:
    header = read_header(SHIPPED)
    assert header["format"] == "dydx-capture" and header["version"] == 1
    assert header["source"].startswith("ws://127.0.0.1:") and header["batched"] is False
    records = list(read_records(SHIPPED))
    frame_records = [r for r in records if isinstance(r, FrameRecord)]
    trailer = records[-1]
    assert isinstance(trailer, Trailer) and trailer.frames == len(frame_records) > 100
    assert all(
        b >= a for a, b in zip([r.t for r in frame_records], [r.t for r in frame_records][1:], strict=False)
    )
    # Every message id from 0 (connected) up to the last one recorded is there: nothing was dropped.
    by_connection: dict[str, set[int]] = {}
    for frame in frames(SHIPPED):
        by_connection.setdefault(frame["connection_id"], set()).add(frame["message_id"])
    for ids in by_connection.values():
        assert ids == set(range(max(ids) + 1))


def test_replay_publishes_every_recorded_update_in_order() -> None:
    publisher = RecordingPublisher()
    source = ReplaySource(SHIPPED, publisher, speed=0)
    play_all(source)
    expected = recorded_updates(SHIPPED)
    assert publisher.by_key() == expected
    assert source.published == sum(len(v) for v in expected.values())
    assert {key for key, _ in expected} >= {ch.ORDERBOOK, ch.TRADES, ch.MARKETS, ch.BLOCK_HEIGHT, ch.CANDLES}
    assert all(extra == b"" for *_, extra in publisher.updates)


def test_snapshots_before_replay_are_the_recorded_ones() -> None:
    source = ReplaySource(SHIPPED, RecordingPublisher(), speed=0)
    recorded = first_snapshots(SHIPPED)
    assert sorted(source.tickers()) == ["BTC-USD", "ETH-USD", "SOL-USD"]
    for (channel, key), contents in recorded.items():
        assert source.valid(channel, key)
        assert source.snapshot(channel, key) == contents, (channel, key)


def test_snapshots_after_replay_match_the_simulator_at_the_end(truth: dict[str, Any]) -> None:
    source = ReplaySource(SHIPPED, RecordingPublisher(), speed=0)
    play_all(source)
    assert source.height()[0] == truth["height"]
    assert source.snapshot(ch.BLOCK_HEIGHT, ch.BLOCK_HEIGHT_ID)["height"] == str(truth["height"])
    markets = source.snapshot(ch.MARKETS, None)["markets"]
    for ticker in source.tickers():
        # A snapshot holds the top 100 levels only, so levels deeper than that which moved up are
        # unknown to any snapshot+updates consumer; the top of the book must be exact.
        book, real = source.snapshot(ch.ORDERBOOK, ticker), truth["orderbooks"][ticker]
        assert book["bids"][:20] == real["bids"][:20] and book["asks"][:20] == real["asks"][:20]
        assert source.snapshot(ch.TRADES, ticker) == {"trades": truth["trades"][ticker]}
        assert source.rest_trades(ticker) == truth["trades"][ticker]
        assert source.rest_candles(ticker, "1MIN") == truth["candles_1min"][ticker]
        assert markets[ticker]["oraclePrice"] == truth["oracle"][ticker]
    assert sum(len(t) for t in truth["trades"].values()) == sum(truth["trades_published"].values()) > 0


def test_rest_views_know_only_the_captured_markets() -> None:
    source = ReplaySource(SHIPPED, RecordingPublisher(), speed=0)
    assert source.rest_orderbook("DOGE-USD") is None
    assert source.rest_trades("DOGE-USD") is None
    assert source.rest_markets("DOGE-USD", 1000) is None
    assert not source.valid(ch.ORDERBOOK, "DOGE-USD")
    assert not source.valid(ch.CANDLES, "BTC-USD/2MINS")
    assert source.valid(ch.CANDLES, "BTC-USD/5MINS")
    assert list(source.rest_markets(None, 2)["markets"]) == source.tickers()[:2]  # type: ignore[index]


@pytest.mark.parametrize("speed", [1.0, 4.0])
def test_pace_is_the_recorded_pace_times_speed(speed: float) -> None:
    clock = FakeClock()
    publisher = RecordingPublisher()
    source = ReplaySource(SHIPPED, publisher, speed=speed, clock=clock)
    records = [r for r in read_records(SHIPPED) if isinstance(r, FrameRecord)]
    start = records[0].t
    source.advance(0.0)
    for _ in range(5):  # after n ticks, exactly the frames recorded within n*tick*speed are out
        clock.now += source.tick_interval
        source.advance(0.0)
    assert source.position == pytest.approx(5 * source.tick_interval * speed, abs=1e-6)
    due = [r for r in records if r.t - start <= source.position]
    assert 0 < len(due) < len(records)
    assert source.published == len(recorded_updates_of(due))
    ticks = play_all(source, clock) + 6
    assert ticks * source.tick_interval * speed == pytest.approx(
        source.duration, abs=2 * source.tick_interval * speed
    )


def recorded_updates_of(records: list[FrameRecord]) -> list[Any]:
    out: list[Any] = []
    for r in records:
        frame = orjson.loads(r.raw)
        if frame["type"] == ch.T_CHANNEL_DATA:
            out.append(frame["contents"])
    return out


def test_a_long_gap_between_ticks_does_not_burst() -> None:
    clock = FakeClock()
    source = ReplaySource(SHIPPED, RecordingPublisher(), speed=1.0, clock=clock)
    source.advance(0.0)
    clock.now += 60.0  # the server was paused for a minute
    source.advance(0.0)
    assert source.position == pytest.approx(ReplaySource.MAX_STEP_S)


def test_loop_starts_over_from_the_first_snapshots() -> None:
    publisher = RecordingPublisher()
    source = ReplaySource(SHIPPED, publisher, speed=0, loop=True)
    first_book = source.snapshot(ch.ORDERBOOK, "BTC-USD")
    total = sum(len(v) for v in recorded_updates(SHIPPED).values())
    while source.passes < 2:
        source.advance(0.0)
    assert source.published == total and not source.finished
    assert source.snapshot(ch.ORDERBOOK, "BTC-USD") == first_book
    while source.published < total + 10:
        source.advance(0.0)
    assert [u[2] for u in publisher.updates[total : total + 10]] == [u[2] for u in publisher.updates[:10]]


def test_cross_fault_crosses_the_stream_but_not_rest() -> None:
    publisher = RecordingPublisher()
    source = ReplaySource(SHIPPED, publisher, speed=0)
    book = source.snapshot(ch.ORDERBOOK, "ETH-USD")
    source.start_cross("ETH-USD")
    channel, key, update, _ = publisher.updates[-1]
    assert (channel, key) == (ch.ORDERBOOK, "ETH-USD")
    crossing = update["bids"][0][0]
    assert float(crossing) > float(book["asks"][0]["price"])
    view = source.rest_orderbook("ETH-USD")
    assert view is not None
    assert float(view["bids"][0]["price"]) < float(view["asks"][0]["price"])  # REST is uncrossed
    source.end_cross("ETH-USD")
    assert publisher.updates[-1][2] == {"bids": [[crossing, "0"]]}
    assert source.snapshot(ch.ORDERBOOK, "ETH-USD") == book


def test_recross_keeps_the_replayed_stream_crossed_for_every_subscriber() -> None:
    """With keep (a `cross` fault with `recross`), a subscriber that joins at any point (an uncrossed
    snapshot, then what recross publishes, then the replayed updates) holds a crossed book after every tick,
    though the replayed trades eat the asks the crossing bid crossed; end_cross uncrosses it."""
    publisher, clock = RecordingPublisher(), FakeClock()
    source = ReplaySource(SHIPPED, publisher, clock=clock)  # the recorded pace, one tick at a time
    source.start_cross("ETH-USD", keep=True)
    books: list[tuple[dict[str, float], dict[str, float], int]] = []  # bids, asks, updates applied so far

    def apply(
        book: tuple[dict[str, float], dict[str, float], int],
    ) -> tuple[dict[str, float], dict[str, float], int]:
        bids, asks, seen = book
        for channel, key, update, _ in publisher.updates[seen:]:
            if (channel, key) == (ch.ORDERBOOK, "ETH-USD"):
                for side, levels in ((bids, update.get("bids", [])), (asks, update.get("asks", []))):
                    for price, size in levels:
                        if float(size) == 0:
                            side.pop(price, None)
                        else:
                            side[price] = float(size)
        return bids, asks, len(publisher.updates)

    ticks = 0
    while not source.finished:
        if ticks % 25 == 0:  # a new subscriber: the snapshot, then recross right after it
            snapshot = source.snapshot(ch.ORDERBOOK, "ETH-USD")
            bids = {level["price"]: float(level["size"]) for level in snapshot["bids"]}
            asks = {level["price"]: float(level["size"]) for level in snapshot["asks"]}
            assert max(map(float, bids)) < min(map(float, asks)), "snapshots are uncrossed"
            mark = len(publisher.updates)
            source.recross("ETH-USD")
            books.append(apply((bids, asks, mark)))
        clock.now += source.tick_interval
        source.advance(0.0)
        ticks += 1
        books = [apply(book) for book in books]
        for bids, asks, _ in books:
            assert max(map(float, bids)) >= min(map(float, asks)), f"uncrossed at tick {ticks}"
    assert len(books) >= 3
    source.end_cross("ETH-USD")
    for bids, asks, _ in (apply(book) for book in books):
        assert max(map(float, bids)) < min(map(float, asks)), "uncrossed once the fault ends"


def test_delist_and_list_through_the_control_seam() -> None:
    publisher = RecordingPublisher()
    source = ReplaySource(SHIPPED, publisher, speed=0)
    source.delist_market("SOL-USD")
    assert "SOL-USD" not in source.tickers() and not source.valid(ch.TRADES, "SOL-USD")
    assert publisher.updates[-1][2] == {"trading": {"SOL-USD": {"status": "FINAL_SETTLEMENT"}}}
    with pytest.raises(KeyError):
        source.delist_market("SOL-USD")
    with pytest.raises(ValueError, match="replaying"):
        source.list_market("NEW-USD", 1.0)


def test_batches_parents_duplicates_and_garbage(tmp_path: Path) -> None:
    parent = "dydx1" + "q" * 38 + "/0"
    path = write_capture(
        tmp_path / "hand.jsonl.gz",
        [
            (1.0, "conn-0", {"type": "connected", "connection_id": "a", "message_id": 0}),
            (1.0, "conn-1", {"type": "connected", "connection_id": "b", "message_id": 0}),
            (
                1.1,
                "conn-0",
                subscribed(
                    ch.ORDERBOOK,
                    "BTC-USD",
                    1,
                    {"bids": [{"price": "10", "size": "1"}], "asks": []},
                    connection_id="a",
                ),
            ),
            (
                1.1,
                "conn-1",
                subscribed(ch.PARENT_SUBACCOUNTS, parent, 1, {"subaccount": {}}, connection_id="b"),
            ),
            (
                1.2,
                "conn-0",
                data(
                    ch.ORDERBOOK,
                    "BTC-USD",
                    2,
                    [{"bids": [["10", "0"]]}, {"asks": [["11", "2"]]}],
                    connection_id="a",
                    batched=True,
                ),
            ),
            (
                1.3,
                "conn-1",
                data(ch.ORDERBOOK, "BTC-USD", 2, {"asks": [["12", "9"]]}, connection_id="b"),
            ),  # recorded twice
            (1.4, "conn-0", "<html>502 Bad Gateway</html>"),
            (
                1.5,
                "conn-1",
                {
                    **data(ch.PARENT_SUBACCOUNTS, parent, 3, {"orders": []}, connection_id="b"),
                    "subaccountNumber": 128,
                },
            ),
            (1.6, "conn-0", data(ch.TRADES, "BTC-USD", 3, {"no": "trades"}, connection_id="a")),
        ],
        trailer=False,
    )
    with gzip.open(path, "ab") as f:
        f.write(b'{"t":1.7,"link":"conn-0","raw":"{\\"type\\"')  # torn by a kill
    publisher = RecordingPublisher()
    source = ReplaySource(path, publisher, speed=0)
    assert source.valid(ch.PARENT_SUBACCOUNTS, parent)
    play_all(source)
    assert publisher.updates == [
        (ch.ORDERBOOK, "BTC-USD", {"bids": [["10", "0"]]}, b""),
        (ch.ORDERBOOK, "BTC-USD", {"asks": [["11", "2"]]}, b""),
        (ch.PARENT_SUBACCOUNTS, parent, {"orders": []}, b',"subaccountNumber":128'),
    ]
    assert source.rest_orderbook("BTC-USD") == {"bids": [], "asks": [{"price": "11", "size": "2"}]}
    assert source.skipped == 2  # the HTML page and the trades update without trades
    # No v4_markets in the capture: the market list is made up from what it holds, for discovery.
    assert source.rest_markets(None, 1000) == {
        "markets": {
            "BTC-USD": {"clobPairId": "0", "ticker": "BTC-USD", "status": "ACTIVE", "oraclePrice": "1"}
        }
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not gzip at all", "not a gzip-compressed capture"),
        (gzip.compress(b'{"hello":"world"}\n'), "not a dydx-capture file"),
        (gzip.compress(b'{"format":"dydx-capture","version":9}\n'), "version 9 is not supported"),
        (gzip.compress(b"[1,2\n"), "not a JSON capture header"),
    ],
)
def test_what_is_not_a_capture_is_refused_with_a_reason(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(content)
    with pytest.raises(CaptureError, match=message):
        ReplaySource(path, RecordingPublisher())


def test_negative_speed_is_refused() -> None:
    with pytest.raises(ValueError, match="speed"):
        ReplaySource(SHIPPED, RecordingPublisher(), speed=-1)


def test_retime_moves_exchange_timestamps_to_the_replay_clock() -> None:
    """A capture replayed with retime looks as fresh as it was when recorded: every block time, trade
    createdAt and oracle effectiveAt lands near the replaying exchange clock, other fields untouched."""
    exchange_now = 2_000_000_000.0  # far from the recording's own time
    plain, moved = RecordingPublisher(), RecordingPublisher()
    play_all(ReplaySource(SHIPPED, plain, speed=0))
    source = ReplaySource(SHIPPED, moved, speed=0, retime=True)
    while not source.finished:
        source.advance(exchange_now)
    assert len(moved.updates) == len(plain.updates)
    stamps: list[str] = []
    for (channel, _, before, _), (_, _, after, _) in zip(plain.updates, moved.updates, strict=True):
        if channel == ch.BLOCK_HEIGHT:
            stamps.append(after["time"])
            assert after["blockHeight"] == before["blockHeight"]
        elif channel == ch.TRADES:
            stamps += [t["createdAt"] for t in after["trades"]]
            assert [t["id"] for t in after["trades"]] == [t["id"] for t in before["trades"]]
        elif channel == ch.MARKETS and "oraclePrices" in after:
            stamps += [p["effectiveAt"] for p in after["oraclePrices"].values()]
        else:
            assert after == before
    assert stamps and all(abs(formats.parse_iso(s) - exchange_now) < 1.0 for s in stamps)
    assert abs(source.height()[1] - exchange_now) < 1.0
    assert source.rest_trades("BTC-USD")[0]["createdAt"] == stamps_of_last_trade(moved, "BTC-USD")  # type: ignore[index]


def stamps_of_last_trade(publisher: RecordingPublisher, ticker: str) -> str:
    last = [u for u in publisher.updates if u[0] == ch.TRADES and u[1] == ticker][-1]
    stamp: str = last[2]["trades"][-1]["createdAt"]
    return stamp


async def test_a_killed_recorder_leaves_a_readable_file(tmp_path: Path) -> None:
    """What was synced before a kill (every SYNC_INTERVAL_S in a recorder) reads back, without trailer."""
    path = tmp_path / "killed.jsonl.gz"
    writer = CaptureWriter(path, {"format": "dydx-capture", "version": 1, "source": "ws://x"})
    await writer.open()
    try:
        writer.event(1.0, "conn-0", "opened")
        writer.frame(1.5, "conn-0", b'{"type":"connected","connection_id":"c","message_id":0}')
        writer.frame(1.6, "conn-0", b"\xff\xfe not utf-8")
        await writer.flush(sync=True)
        # The file is still open (as when the process dies now): what was synced is there.
        assert list(read_records(path)) == [
            LinkEvent(1.0, "conn-0", "opened"),
            FrameRecord(1.5, "conn-0", b'{"type":"connected","connection_id":"c","message_id":0}'),
            FrameRecord(1.6, "conn-0", b"\xff\xfe not utf-8"),
        ]
    finally:
        await writer.close()
    assert list(read_records(path))[-1] == Trailer(pytest.approx(time.time(), abs=5), 2)  # type: ignore[arg-type]
