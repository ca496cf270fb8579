"""Backoff bounds, Retry-After parsing, the subscribe pacer, and how the pool plans its links."""

from __future__ import annotations

import asyncio
import random
import time

from exporter.config import FeedSettings, Settings
from exporter.feed.backoff import MAX_RETRY_AFTER_S, Backoff, Pacer, parse_retry_after
from exporter.feed.pool import links_needed, market_keys
from exporter.protocol import channels as ch


def test_full_jitter_stays_under_exponential_ceiling_and_cap():
    backoff = Backoff(0.5, 8.0, rng=random.Random(7))
    for attempt in range(12):
        ceiling = min(8.0, 0.5 * 2**attempt)
        assert 0.0 <= backoff.next_delay() <= ceiling
    assert backoff.ceiling() == 8.0
    assert backoff.next_delay(at_least=30.0) == 30.0  # Retry-After is honoured over the jitter
    backoff.reset()
    assert backoff.ceiling() == 0.5


def test_retry_after_units():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("1500", milliseconds=True) == 1.5  # the indexer's REST API
    assert parse_retry_after(None) == 0.0 and parse_retry_after("soon") == 0.0
    assert parse_retry_after("99999999") == MAX_RETRY_AFTER_S
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 0 < parse_retry_after(http_date) <= 61


async def test_pacer_holds_the_global_rate():
    pacer = Pacer(rate=50.0, burst=1)
    started = time.monotonic()
    for _ in range(11):
        await pacer.acquire()
    # 1 immediately, then 10 at 50/s: at least 0.2 s.
    assert time.monotonic() - started >= 0.19
    await asyncio.sleep(0)


def _settings(**overrides: object) -> Settings:
    return Settings(feed=FeedSettings(ws_url="ws://x/v4/ws", rest_url="http://x"), **overrides)  # type: ignore[arg-type]


def test_links_needed_for_mainnet_scale():
    s = _settings()
    assert links_needed(s, 270) == 9  # ceil(270 / 32): the number the README states
    assert links_needed(s, 32) == 1 and links_needed(s, 33) == 2 and links_needed(s, 40) == 2
    with_candles = _settings(channels=(*s.channels, ch.CANDLES), candle_resolutions=("1MIN", "5MINS"))
    assert links_needed(with_candles, 270) == 17  # 540 candle subscriptions / 32
    assert market_keys(with_candles, "BTC-USD") == [
        (ch.TRADES, "BTC-USD"),
        (ch.ORDERBOOK, "BTC-USD"),
        (ch.CANDLES, "BTC-USD/1MIN"),
        (ch.CANDLES, "BTC-USD/5MINS"),
    ]
