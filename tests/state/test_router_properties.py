"""Property-based: whatever arrives on the socket, `handle` never raises, every frame is counted (as a
message or as invalid), and state stays sane (books hold only finite positive numbers, in order; counters
finite; the exposition still renders and parses)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.protocol import channels as ch
from exporter.state.book import Book
from tests.helpers import parse_metrics
from tests.state.pipeline_frames import Pipeline, book_snapshot, market_object, subscribed

pytestmark = pytest.mark.timeout(60)

MAX_FRAME = 4096
TICKERS = ("BTC-USD", "ETH-USD")
KEYS = (
    "type", "channel", "id", "message_id", "contents", "bids", "asks", "trades", "price", "size", "side",
    "createdAt", "oraclePrices", "trading", "oraclePrice", "effectiveAt", "blockHeight", "height", "time",
    "status", "ticker", "clobPairId", "markets", "candles", "close", "startedAt", "message", "connection_id",
)  # fmt: skip
NUMBERISH = st.sampled_from(
    ["67012", "0.8123", "0", "-1", "NaN", "nan", "inf", "-inf", "1e400", "1e-400", "1_000", " 1 ", "", "0x10",
     "9" * 400, "2026-03-04T19:21:07.512Z", "2026-13-99T99:99:99.999Z", "2026-03-04T19:21:61.000Z", "BUY",
     "SELL", "ACTIVE", "\udcff"]
)  # fmt: skip
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    NUMBERISH,
    st.sampled_from(TICKERS),
)
json_value = st.recursive(
    leaf,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=16,
)
field = st.one_of(NUMBERISH, leaf)


def maybe(d: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The dict with any subset of its keys dropped."""
    return st.sets(st.sampled_from(sorted(d))).map(lambda drop: {k: v for k, v in d.items() if k not in drop})


level = st.one_of(st.tuples(field, field).map(list), st.lists(field, max_size=3), leaf)
orderbook_contents = st.fixed_dictionaries(
    {}, optional={"bids": st.lists(level, max_size=3), "asks": st.lists(level, max_size=3)}
)
trade_row = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=30) | st.just("0334f9a70000000200000005"),
        "side": field,
        "size": field,
        "price": field,
        "createdAt": field,
        "type": field,
    },
)
trades_contents = st.fixed_dictionaries(
    {}, optional={"trades": st.lists(trade_row | leaf, max_size=3) | leaf}
)
oracle_row = st.fixed_dictionaries(
    {}, optional={"oraclePrice": field, "effectiveAt": field, "marketId": leaf}
)
markets_contents = st.fixed_dictionaries(
    {},
    optional={
        "oraclePrices": st.dictionaries(
            st.sampled_from(TICKERS) | st.text(max_size=8), oracle_row | leaf, max_size=3
        )
        | leaf,
        "trading": st.dictionaries(
            st.sampled_from(TICKERS) | st.text(max_size=8),
            st.fixed_dictionaries({}, optional={"status": field, "ticker": field, "clobPairId": field})
            | leaf,
            max_size=3,
        )
        | leaf,
        "markets": st.dictionaries(st.sampled_from(TICKERS) | st.text(max_size=8), json_value, max_size=3),
    },
)
block_contents = st.fixed_dictionaries({}, optional={"blockHeight": field, "height": field, "time": field})
candle_contents = st.fixed_dictionaries({}, optional={"close": field, "startedAt": field, "ticker": field})
contents = st.one_of(
    orderbook_contents, trades_contents, markets_contents, block_contents, candle_contents, json_value
)
frame_dict = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(list(ch.FRAME_TYPES)) | leaf,
        "channel": st.sampled_from(list(ch.ALL_CHANNELS)) | leaf,
        "id": st.sampled_from([*TICKERS, "BTC-USD/1MIN", ch.BLOCK_HEIGHT_ID]) | leaf,
        "message_id": st.integers(min_value=-5, max_value=10**6) | leaf,
        "connection_id": st.just("c") | leaf,
        "message": st.text(max_size=40) | leaf,
        "contents": contents | st.lists(contents, max_size=3),
    },
)


def encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


raw_frame = st.one_of(
    frame_dict.map(encode),
    json_value.map(encode),
    st.binary(max_size=64),
    st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=40).map(
        lambda n: b'{"type":"channel_data","contents":"' + b"x" * (n * 200)
    ),
    st.just(
        b'{"type":"channel_data","channel":"v4_orderbook","id":"BTC-USD","message_id":9,"contents":{"bids":[["NaN","1"]]}}'
    ),
    st.just('{"type":"connected","connection_id":"\udcff","message_id":0}'.encode("utf-8", "surrogatepass")),
)


def sane_book(book: Book) -> None:
    for side in (book.bids, book.asks):
        assert side.prices == sorted(side.sizes)
        assert set(side.ids) == set(side.sizes)
        for price, size in side.sizes.items():
            assert isinstance(price, float) and math.isfinite(price) and price > 0
            assert isinstance(size, float) and math.isfinite(size) and size > 0


def fresh_pipeline() -> Pipeline:
    pipe = Pipeline(max_frame_bytes=MAX_FRAME)
    pipe.connect()
    pipe.universe.load({t: market_object(t) for t in TICKERS})
    for t in TICKERS:
        pipe.feed(subscribed(ch.ORDERBOOK, t, pipe.mid(), book_snapshot([("100", "1")], [("101", "1")])))
        pipe.feed(subscribed(ch.TRADES, t, pipe.mid(), {"trades": []}))
    return pipe


def counted(pipe: Pipeline) -> int:
    total = 0
    for name in (*ch.ALL_CHANNELS, "none", "unknown"):
        metrics = pipe.collector.channel(name) if name in ch.ALL_CHANNELS else None
        if name == "none":
            metrics = pipe.collector.no_channel
        elif name == "unknown":
            metrics = pipe.collector.unknown_channel
        assert metrics is not None
        total += sum(metrics.messages.values()) + sum(metrics.invalid.values())
    return total


@pytest.mark.slow  # a few seconds: hundreds of generated frame sequences
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(frames=st.lists(raw_frame, min_size=1, max_size=12))
def test_any_frame_sequence_is_counted_and_never_corrupts_state(frames: list[bytes]) -> None:
    pipe = fresh_pipeline()
    for raw in frames:
        before = counted(pipe)
        pipe.feed(raw)  # must not raise
        assert counted(pipe) > before, raw[:200]
        for book in pipe.router.books.books.values():
            sane_book(book)
    samples = parse_metrics(pipe.collector.render_text())
    for (name, _), value in samples.items():
        if name.startswith(("dydx_trade", "dydx_orderbook", "dydx_oracle", "dydx_updates", "dydx_messages")):
            assert math.isfinite(value) and value >= 0, name
    assert pipe.collector.registry.render(openmetrics=True).endswith(b"# EOF\n")
    # Bad input is classified, never caught by the last-resort handler (which would mean a bug).
    assert pipe.invalid(reason="processing_error") == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe{}",  # invalid UTF-8
        b"[" * 5000 + b"]" * 5000,  # deeper than orjson allows
        b'{"type":"channel_data","channel":"v4_trades","id":"BTC-USD","message_id":3,"contents":'
        + b"1" * 5000
        + b"}",
        "{" + '"a":' * 3 + "null}" * 1,
        b"null",
        b'{"type":"subscribed","channel":"v4_orderbook","id":["BTC-USD"],"message_id":1,"contents":{}}',
        b'{"type":"channel_data","channel":["v4_trades"],"message_id":1}',
        b'{"type":{"x":1}}',
    ],
)
def test_hostile_frames(raw: bytes | str) -> None:
    pipe = fresh_pipeline()
    before = counted(pipe)
    assert pipe.feed(raw) is None
    assert counted(pipe) > before


def test_oversized_frame_refused_unread() -> None:
    pipe = fresh_pipeline()
    pipe.feed(b'{"type":"connected","connection_id":"' + b"x" * MAX_FRAME + b'","message_id":0}')
    assert pipe.invalid("unknown", "oversized") == 1
