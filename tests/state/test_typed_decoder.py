"""The typed (msgspec) fast path changes nothing a user sees: for any frame sequence, a pipeline that
decodes with it and one that only has the dict (orjson) path export the same metrics, byte for byte, and
bad frames are counted under the same reasons.

Both pipelines are built from `Settings.from_sources(argv, env)`, as the CLI builds the exporter's: the
channel names are split out of an argv string at run time, never the module's interned constants. Built
from literals, an identity comparison of channel names on the hot path once passed this test while the
shipped exporter rejected every one-level order book update (issue 11).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import Settings
from exporter.protocol import channels as ch
from exporter.protocol.typed import TypedDecodeError
from tests.helpers import metric_sum, parse_metrics
from tests.state.pipeline_frames import Pipeline, book_snapshot, market_object, subscribed
from tests.state.test_router_properties import (
    MAX_FRAME,
    TICKERS,
    candle_contents,
    contents,
    field,
    leaf,
    raw_frame,
    trades_contents,
)

pytestmark = pytest.mark.timeout(60)

NOW = 1_772_652_067.9  # a fixed clock: both pipelines must see identical times
ARGV = (
    f"--channels={ch.MARKETS},{ch.TRADES},{ch.ORDERBOOK},{ch.BLOCK_HEIGHT}",
    "--candles.resolutions=1MIN",
    f"--feed.max-frame-bytes={MAX_FRAME}",
)


def cli_settings() -> Settings:
    settings = Settings.from_sources(ARGV, {})
    assert ch.ORDERBOOK in settings.channels
    assert not any(name is ch.ORDERBOOK for name in settings.channels), "names must be built at run time"
    return settings


def pipeline(typed: bool) -> Pipeline:
    """The Router, Collector and MarketUniverse the exporter builds from the CLI's settings."""
    settings = cli_settings()
    pipe = Pipeline(
        channels=settings.channels,
        clock=lambda: NOW,
        wants_market=settings.wants_market,
        typed=typed,
        max_frame_bytes=settings.feed.max_frame_bytes,
        stale_after=settings.stale_after,
        id_grace=settings.message_id_grace,
    )
    pipe.connect()
    pipe.universe.load({t: market_object(t) for t in TICKERS})
    for t in TICKERS:
        pipe.feed(subscribed(ch.ORDERBOOK, t, pipe.mid(), book_snapshot([("100", "1")], [("101", "1")])), NOW)
        pipe.feed(subscribed(ch.TRADES, t, pipe.mid(), {"trades": []}), NOW)
        pipe.feed(subscribed(ch.CANDLES, f"{t}/1MIN", pipe.mid(), {"candles": []}), NOW)
    pipe.feed(
        subscribed(ch.MARKETS, None, pipe.mid(), {"markets": {t: market_object(t) for t in TICKERS}}), NOW
    )
    pipe.feed(subscribed(ch.BLOCK_HEIGHT, ch.BLOCK_HEIGHT_ID, pipe.mid(), {"height": "5", "time": "x"}), NOW)
    for channel in ch.ALL_CHANNELS:  # each channel's first data frame sets up its route (dict path)
        pipe.feed(
            {"type": ch.T_CHANNEL_DATA, "channel": channel, "message_id": pipe.mid(), "contents": {}}, NOW
        )
    return pipe


number = st.sampled_from(
    ["100.5", "101", "99.25", "0", "0.0", "1e2", "inf", "Infinity", "1e400", "-0", "nan"]
)
price_text = number | st.integers(90, 110).map(str) | field
level = st.one_of(st.tuples(price_text, number | field).map(list), st.lists(number, max_size=3), leaf)
good_level = st.tuples(
    st.sampled_from(["100.5", "101", "99.25", "1e2", "100.50", "inf", "1e400", "0", "-1", "NaN", "1_0"]),
    st.sampled_from(["2", "0", "0.5", "1e3", "inf", "-0", "nan", " 1"]),
).map(list)
book_update = st.one_of(
    st.fixed_dictionaries({"bids": st.tuples(good_level).map(list)}),
    st.fixed_dictionaries({"asks": st.tuples(good_level).map(list)}),
    st.fixed_dictionaries({"bids": st.tuples(good_level).map(list), "asks": st.tuples(good_level).map(list)}),
    st.fixed_dictionaries({"bids": st.tuples(level).map(list)}),
    st.fixed_dictionaries(
        {}, optional={"bids": st.lists(level, max_size=2) | leaf, "asks": st.lists(level, max_size=2) | leaf}
    ),
)
oracle_row = st.fixed_dictionaries(
    {"oraclePrice": number | field, "effectiveAt": st.just("2026-03-04T19:21:07.512Z") | field},
    optional={"effectiveAtHeight": st.just("5"), "marketId": st.just(0)},
)
markets_update = st.fixed_dictionaries(
    {"oraclePrices": st.dictionaries(st.sampled_from([*TICKERS, "XYZ-USD"]), oracle_row, max_size=3)},
    optional={"trading": st.just({"BTC-USD": {"status": "ACTIVE"}})},
)
block_update = st.fixed_dictionaries({"blockHeight": field | st.just("7"), "time": field})
channel_contents = {
    ch.ORDERBOOK: book_update,
    ch.MARKETS: markets_update,
    ch.TRADES: trades_contents,
    ch.CANDLES: candle_contents,
    ch.BLOCK_HEIGHT: block_update,
    ch.SUBACCOUNTS: contents,
}


@st.composite
def data_frame(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """A data frame in (or near) the protocol's shape; the bool says whether it takes the next id."""
    channel = draw(st.sampled_from(sorted(channel_contents)))
    batched = draw(st.booleans())
    body = channel_contents[channel]
    frame: dict[str, Any] = {"type": ch.T_CHANNEL_BATCH_DATA if batched else ch.T_CHANNEL_DATA}
    ids = (
        [ch.BLOCK_HEIGHT_ID]
        if channel == ch.BLOCK_HEIGHT
        else ["BTC-USD/1MIN"]
        if channel == ch.CANDLES
        else TICKERS
    )
    frame["id"] = draw(st.sampled_from(ids) | st.sampled_from([*TICKERS, "ZZZ-USD"]) | leaf)
    frame["channel"] = channel
    frame["contents"] = draw(st.lists(body, min_size=0, max_size=3) if batched else body)
    if draw(st.integers(0, 19)) == 0:  # a wrongly shaped envelope now and then
        frame["contents"] = draw(body) if batched else [draw(body)]
    return frame, draw(st.integers(0, 9)) > 0


@pytest.mark.slow  # a few seconds: hundreds of generated frame sequences
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(frames=st.lists(data_frame() | data_frame() | data_frame() | raw_frame, min_size=1, max_size=16))
def test_typed_and_dict_paths_export_the_same(frames: list[Any]) -> None:
    typed, plain = pipeline(True), pipeline(False)
    for item in frames:
        if isinstance(item, bytes):
            raws = [item, item]
        else:
            frame, in_order = item
            # The next id in order (a frame refused before its id was read leaves the id unused).
            expected = plain.router._links[plain.link].ids.fast_next
            frame["message_id"] = (expected if expected is not None else plain.mid()) if in_order else 10**6
            raws = [json.dumps(frame, allow_nan=True).encode("utf-8", "surrogatepass")] * 2
        assert typed.feed(raws[0], NOW) == plain.feed(raws[1], NOW)
    assert typed.collector.render_text() == plain.collector.render_text()
    assert book_states(typed) == book_states(plain)


def book_states(pipe: Pipeline) -> dict[str, Any]:
    return {
        ticker: (
            book.bids.sizes,
            book.bids.ids,
            book.asks.sizes,
            book.asks.ids,
            book.updated_at,
            book.crossed,
        )
        for ticker, book in pipe.router.books.books.items()
    }


def test_protocol_frames_take_the_typed_path() -> None:
    """The frames of the protocol's own shapes decode typed (else the fast path would never run)."""
    decode = pipeline(True).router.typed.envelope
    for channel, contents_ in [
        (ch.ORDERBOOK, {"bids": [["100.5", "2"]]}),
        (ch.MARKETS, {"oraclePrices": {"BTC-USD": {"oraclePrice": "1", "effectiveAt": "t", "marketId": 0}}}),
        (ch.TRADES, {"trades": []}),
        (ch.CANDLES, {"close": "1"}),
        (ch.BLOCK_HEIGHT, {"blockHeight": "7", "time": "t"}),
    ]:
        raw = json.dumps(
            {
                "type": "channel_data",
                "connection_id": "c",
                "message_id": 9,
                "id": "BTC-USD",
                "channel": channel,
                "version": "1.0.0",
                "contents": contents_,
            }
        )
        assert decode(raw).message_id == 9
    with pytest.raises(TypedDecodeError):
        decode('{"type":"subscribed","channel":"v4_orderbook","id":"BTC-USD","message_id":1,"contents":{}}')


decimal_text = st.one_of(
    st.integers(0, 20)
    .flatmap(lambda p: st.decimals(allow_nan=False, allow_infinity=False, places=p))
    .map(str),
    st.floats(min_value=0.0, allow_nan=False).map(repr),
    st.from_regex(r"\A[0-9]{1,25}(\.[0-9]{0,25})?([eE][+-]?[0-9]{1,3})?\Z"),
)


@settings(max_examples=2000, deadline=None)
@given(price=decimal_text, size=decimal_text)
def test_decoded_levels_equal_python_float(price: str, size: str) -> None:
    """Prices and sizes decoded by msgspec are the floats the dict path's float() gives, or refused."""
    decode = pipeline(True).router.typed.levels
    try:
        levels = decode(json.dumps({"bids": [[price, size]]}))
    except TypedDecodeError:
        return  # the dict path decides
    assert not isinstance(levels, list) and levels.bids is not None
    assert levels.bids[0] == (float(price), float(size))


EDGE_CONTENTS = [
    (ch.ORDERBOOK, "BTC-USD", {"bids": [[p, s]]})
    for p in ("100.5", "inf", "Infinity", "1e400", "NaN", "1_0", "-1", "0", 100.5, True)
    for s in ("2", "0", "-0", "inf", "nan", " 1", 2)
] + [
    (ch.ORDERBOOK, "BTC-USD", {"bids": [["100.5", "2"]], "asks": [["inf", "1"]]}),
    (ch.ORDERBOOK, "BTC-USD", {"asks": [["100.5", "2"], ["101", "1"]]}),
    (ch.ORDERBOOK, "BTC-USD", {"asks": []}),
    (ch.ORDERBOOK, "BTC-USD", {}),
    (ch.ORDERBOOK, "ZZZ-USD", {"bids": [["100.5", "2"]]}),
    (ch.MARKETS, None, {"oraclePrices": {"BTC-USD": {"oraclePrice": "inf", "effectiveAt": "x"}}}),
    (ch.MARKETS, None, {"oraclePrices": {"BTC-USD": {"oraclePrice": "101", "effectiveAt": "bad"}}}),
    (ch.MARKETS, None, {"oraclePrices": {"XYZ-USD": {"oraclePrice": "101", "effectiveAt": "bad"}}}),
    (ch.MARKETS, None, {"oraclePrices": {}, "trading": {"BTC-USD": {"status": "FINAL_SETTLEMENT"}}}),
    (ch.TRADES, "BTC-USD", {"trades": [{"id": "x", "side": "BUY", "price": "inf", "size": "1"}]}),
]


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize(("channel", "sub_id", "contents_"), EDGE_CONTENTS)
def test_edge_frames_are_counted_alike(
    channel: str, sub_id: str | None, contents_: Any, batched: bool
) -> None:
    typed, plain = pipeline(True), pipeline(False)
    for pipe in (typed, plain):
        frame = {
            "type": ch.T_CHANNEL_BATCH_DATA if batched else ch.T_CHANNEL_DATA,
            "id": sub_id,
            "channel": channel,
            "message_id": pipe.router._links[pipe.link].ids.fast_next,
            "contents": [contents_] if batched else contents_,
        }
        pipe.feed(json.dumps(frame, allow_nan=True), NOW)
    assert typed.collector.render_text() == plain.collector.render_text()
    assert book_states(typed) == book_states(plain)


@pytest.mark.parametrize(
    "raw_template",
    [
        # invalid UTF-8 inside the envelope (the subscription id) and inside order book contents
        b'{"type":"channel_data","message_id":%d,"id":"BTC-\xff\xfe","channel":"v4_orderbook",'
        b'"contents":{"bids":[["100.5","2"]]}}',
        b'{"type":"channel_data","message_id":%d,"id":"BTC-USD","channel":"v4_orderbook",'
        b'"contents":{"bids":[["10\xff","2"]]}}',
    ],
)
def test_invalid_utf8_in_a_string_is_refused_alike(raw_template: bytes) -> None:
    """msgspec raises the builtin UnicodeDecodeError here, not a msgspec error: it must still fall back."""
    typed, plain = pipeline(True), pipeline(False)
    invalid_before = metric_sum(parse_metrics(typed.collector.render_text()), "dydx_messages_invalid_total")
    for pipe in (typed, plain):
        pipe.feed(raw_template % pipe.router._links[pipe.link].ids.fast_next, NOW)
    assert typed.collector.render_text() == plain.collector.render_text()
    assert book_states(typed) == book_states(plain)
    invalid_after = metric_sum(parse_metrics(typed.collector.render_text()), "dydx_messages_invalid_total")
    assert invalid_after == invalid_before + 1
