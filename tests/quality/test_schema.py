"""Schema drift (issue 15 point 4) on the real router: an unknown field in a snapshot, or in a sampled
update (one data frame in SAMPLE_EVERY per channel, found by the typed hot path's frames too), counts in
dydx_schema_unknown_fields_total{channel} and is logged once per name; known shapes count nothing. The
clean end-to-end run (tests/quality/test_clean_run.py) holds the simulator's whole feed to zero."""

from __future__ import annotations

import structlog

from exporter.protocol import channels as ch
from exporter.state.schema import SAMPLE_EVERY
from tests.helpers import metric_value
from tests.state.pipeline_frames import Pipeline, book_snapshot, data, subscribed

UNKNOWN = "dydx_schema_unknown_fields_total"


def test_unknown_fields_are_counted_per_channel_and_logged_once() -> None:
    pipe = Pipeline()
    pipe.connect()
    snap = {**book_snapshot([("100", "1")], [("101", "2")]), "sequence": 7}
    snap["bids"][0]["orderCount"] = 3
    with structlog.testing.capture_logs() as logs:
        pipe.feed(subscribed(ch.ORDERBOOK, "BTC-USD", pipe.mid(), snap))
        pipe.feed(subscribed(ch.ORDERBOOK, "ETH-USD", pipe.mid(), snap))
        # Every update of the typed hot path; the sampled one carries a new field.
        for i in range(SAMPLE_EVERY):
            update: dict[str, object] = {"bids": [["100", str(i + 1)]]}
            if i == SAMPLE_EVERY - 1:
                update["ts"] = "x"
            pipe.feed(data(ch.ORDERBOOK, "BTC-USD", pipe.mid(), update))
    samples = pipe.samples()
    # Two snapshots with two unknown fields each, one sampled update with one.
    assert metric_value(samples, UNKNOWN, channel=ch.ORDERBOOK) == 5
    assert metric_value(samples, UNKNOWN, channel=ch.TRADES) == 0
    fields = sorted(e["field"] for e in logs if e["event"] == "schema_unknown_field")
    assert fields == ["bids.orderCount", "sequence", "ts"]
    assert pipe.invalid() == 0


def test_known_shapes_count_nothing() -> None:
    pipe = Pipeline()
    pipe.connect()
    pipe.feed(
        subscribed(ch.BLOCK_HEIGHT, None, pipe.mid(), {"height": "5", "time": "2026-03-04T19:21:07.100Z"})
    )
    trade = {"id": "0334f9a70000000200000005", "side": "BUY", "size": "1", "price": "2", "type": "LIMIT",
             "createdAt": "2026-03-04T19:21:07.512Z", "createdAtHeight": "5"}  # fmt: skip
    pipe.feed(subscribed(ch.TRADES, "BTC-USD", pipe.mid(), {"trades": [trade]}))
    assert (metric_value(pipe.samples(), UNKNOWN, channel=ch.TRADES) or 0) == 0
    assert (metric_value(pipe.samples(), UNKNOWN, channel=ch.BLOCK_HEIGHT) or 0) == 0
