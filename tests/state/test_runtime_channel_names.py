"""Channel names built at run time, as the shipped exporter builds them (parsing --channels), must route
every frame exactly as the module constants do.

Regression: the hot path once compared the channel name by identity with the interned constant. Names that
come from `Settings.from_sources` (argv split at run time) are equal but not identical, so every one-level
order-book update took the general path and was rejected as `wrong_type`, while tests that built the
pipeline from literals stayed green."""

from __future__ import annotations

import time

import orjson

from exporter.config import Settings
from exporter.protocol import channels as ch
from exporter.service import Exporter
from tests.helpers import parse_metrics
from tests.state.pipeline_frames import book_snapshot, connected, data, market_object, subscribed


def _runtime(name: str) -> str:
    """An equal string that is not the constant object (what str.split of an argv value produces)."""
    built = "".join(list(name))
    assert built == name and built is not name
    return built


def test_orderbook_and_oracle_updates_route_with_channel_names_from_argv() -> None:
    channels = ",".join(_runtime(c) for c in (ch.MARKETS, ch.ORDERBOOK, ch.TRADES, ch.BLOCK_HEIGHT))
    settings = Settings.from_sources(["--channels", channels, "--markets", "BTC-USD"], {})
    assert ch.ORDERBOOK in settings.channels
    exporter = Exporter(settings)  # built, not started: the same Collector and Router the CLI runs
    router, link = exporter.router, "conn-0"

    def feed(frame: object) -> None:
        # Names inside the frame are decoded from bytes too, so they are never the constants either.
        router.handle(link, orjson.dumps(frame), time.time())

    router.link_opened(link)
    feed(connected())
    feed(subscribed(_runtime(ch.MARKETS), None, 1, {"markets": {"BTC-USD": market_object("BTC-USD")}}))
    feed(subscribed(ch.ORDERBOOK, "BTC-USD", 2, book_snapshot([("100", "1")], [("101", "2")])))
    updates = [
        data(ch.ORDERBOOK, "BTC-USD", 3, {"bids": [["100", "5"]]}),  # a new size for a held level
        data(ch.ORDERBOOK, "BTC-USD", 4, {"asks": [["102", "3"]]}),  # a new level
        data(ch.ORDERBOOK, "BTC-USD", 5, {"asks": [["101", "0"]]}),  # a removal
        data(ch.ORDERBOOK, "BTC-USD", 6, [{"bids": [["99", "1"]]}, {"bids": [["100", "0"]]}], batched=True),
        data(
            ch.MARKETS,
            None,
            7,
            {
                "oraclePrices": {
                    "BTC-USD": {
                        "oraclePrice": "100.5",
                        "effectiveAt": "2026-03-04T19:21:07.100Z",
                        "effectiveAtHeight": "1",
                        "marketId": 0,
                    }
                }
            },
        ),
    ]
    for frame in updates:
        feed(frame)

    samples = parse_metrics(exporter.collector.render_text())
    invalid = {labels: v for (name, labels), v in samples.items() if name == "dydx_messages_invalid_total"}
    assert sum(invalid.values()) == 0, invalid

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("dydx_updates_total", channel=ch.ORDERBOOK) == 5
    assert value("dydx_orderbook_levels", market="BTC-USD", side="bid") == 1  # 100 removed, 99 added
    assert value("dydx_orderbook_levels", market="BTC-USD", side="ask") == 1  # 101 removed, 102 added
    assert value("dydx_orderbook_best_price", market="BTC-USD", side="bid") == 99
    assert value("dydx_orderbook_best_price", market="BTC-USD", side="ask") == 102
    assert value("dydx_oracle_price", market="BTC-USD") == 100.5
