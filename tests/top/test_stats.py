"""Rates and quantiles of `top` (exporter/top/stats.py): the PromQL arithmetic the view relies on."""

from __future__ import annotations

import math

import pytest

from exporter.top.stats import increase, increases, parse, quantile, rate, rates, window_quantiles


def exposition(
    updates: dict[str, int], trades: dict[tuple[str, str], int], latency: dict[str, int], latency_sum: float
) -> str:
    """A scrape of three families in the text format: updates by channel, trades by (market, side), and the
    v4_trades latency histogram by bucket bound (its count is the +Inf bucket)."""
    lines = ["# TYPE dydx_updates_total counter"]
    lines += [f'dydx_updates_total{{channel="{channel}"}} {n}' for channel, n in updates.items()]
    lines += ["# TYPE dydx_trades_total counter"]
    lines += [f'dydx_trades_total{{market="{m}",side="{side}"}} {n}' for (m, side), n in trades.items()]
    lines += ["# TYPE dydx_feed_latency_seconds histogram"]
    lines += [
        f'dydx_feed_latency_seconds_bucket{{channel="v4_trades",le="{le}"}} {n}' for le, n in latency.items()
    ]
    lines += [
        f'dydx_feed_latency_seconds_count{{channel="v4_trades"}} {latency["+Inf"]}',
        f'dydx_feed_latency_seconds_sum{{channel="v4_trades"}} {latency_sum:g}',
    ]
    return "\n".join(lines) + "\n"


BEFORE = exposition(
    {"v4_trades": 100, "v4_orderbook": 1000},
    {("BTC-USD", "buy"): 10},
    {"0.1": 5, "0.2": 10, "+Inf": 10},
    latency_sum=1,
)
AFTER = exposition(
    {"v4_trades": 150, "v4_orderbook": 30},
    {("BTC-USD", "buy"): 14, ("ETH-USD", "sell"): 3},
    {"0.1": 5, "0.2": 15, "+Inf": 20},
    latency_sum=5,
)


@pytest.fixture
def scrapes():
    return parse(BEFORE, monotonic=10.0, wall=1000.0), parse(AFTER, monotonic=12.0, wall=1002.0)


def test_gauge_views_of_one_scrape(scrapes):
    _, cur = scrapes
    assert cur.total("dydx_updates_total") == 180
    assert cur.by("dydx_trades_total", "side") == {"buy": 14, "sell": 3}
    assert cur.value("dydx_trades_total", market="ETH-USD") == 3
    assert cur.value("dydx_chain_block_height") is None  # a metric this exporter does not have
    assert not cur.has("dydx_chain_block_height") and cur.has("dydx_updates_total")


def test_increase_counts_a_reset_from_zero_and_a_new_series_from_zero(scrapes):
    prev, cur = scrapes
    # v4_orderbook went 1000 -> 30: the exporter restarted, so 30 is what happened since.
    assert increases(prev, cur, "dydx_updates_total", "channel") == {"v4_trades": 50, "v4_orderbook": 30}
    # ETH-USD's first trades created the series: all 3 happened in the interval.
    assert increases(prev, cur, "dydx_trades_total", "market") == {"BTC-USD": 4, "ETH-USD": 3}
    assert increase(prev, cur, "dydx_trades_total", side="sell") == 3


def test_rates_divide_by_the_time_between_scrapes(scrapes):
    prev, cur = scrapes
    assert rates(prev, cur, "dydx_updates_total", "channel") == {"v4_trades": 25.0, "v4_orderbook": 15.0}
    assert rate(prev, cur, "dydx_trades_total") == pytest.approx(3.5)
    assert rate(prev, cur, "dydx_no_such_metric_total") == 0


def test_window_quantiles_use_only_the_observations_of_the_interval(scrapes):
    prev, cur = scrapes
    # In the interval: 0 at or below 0.1, 5 in (0.1, 0.2], 5 above 0.2.
    ((p25, p50, p90),) = window_quantiles(
        prev, cur, "dydx_feed_latency_seconds", "channel", (0.25, 0.5, 0.9)
    ).values()
    assert p25 == pytest.approx(0.15)  # rank 2.5 of 5 in (0.1, 0.2]: linear interpolation
    assert p50 == pytest.approx(0.2)
    assert p90 == pytest.approx(0.2)  # in +Inf: the highest finite bound, as histogram_quantile answers


def test_quantile_matches_histogram_quantile_edge_cases():
    assert quantile(0.5, [(0.1, 0), (math.inf, 0)]) is None  # nothing observed
    assert quantile(0.5, []) is None
    assert quantile(0.5, [(0.1, 4)]) is None  # no +Inf bucket: not a histogram
    assert quantile(0.5, [(0.1, 10), (math.inf, 10)]) == pytest.approx(0.05)  # first bucket starts at 0
    assert quantile(0.99, [(math.inf, 7), (1.0, 2), (0.5, 1)]) == 1.0  # unordered input is fine


def test_parse_rejects_a_body_that_is_not_the_text_format():
    with pytest.raises(ValueError):
        parse("<html>login</html>", 0.0, 0.0)
