"""The latency buckets make histogram_quantile tell the truth: a steady feed lag of L seconds reads within
10% of L (the issue's acceptance bound), computed the way PromQL interpolates."""

from __future__ import annotations

import random

import pytest

from exporter.metrics.catalog import FEED_LATENCY_BUCKETS, PROCESSING_BUCKETS
from exporter.metrics.histogram import Histogram


def histogram_quantile(q: float, bounds: tuple[float, ...], counts: list[int]) -> float:
    """PromQL's histogram_quantile over one histogram (linear interpolation inside the bucket)."""
    total = sum(counts)
    rank = q * total
    cumulative = 0
    lower = 0.0
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        if cumulative + count >= rank and count:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - cumulative) / count
        cumulative += count
        lower = bound
    return lower


@pytest.mark.parametrize(
    "lag", [0.1, 0.15, 0.3, 0.5, 0.75, 1.0, 1.3, 2.0, 3.0, 4.2, 5.0, 7.5, 10.0, 17.0, 30.0, 45.0, 60.0]
)
def test_median_of_a_steady_lag_is_within_ten_percent(lag: float) -> None:
    rng = random.Random(int(lag * 1000))
    histogram = Histogram(FEED_LATENCY_BUCKETS)
    for _ in range(2000):
        # Loopback delivery and processing add a few milliseconds of jitter on top of the lag.
        histogram.observe(lag + rng.uniform(0.0, 0.005))
    median = histogram_quantile(0.5, histogram.bounds, histogram.counts)
    assert abs(median - lag) <= 0.1 * lag, (lag, median)


def test_buckets_are_sorted_and_cover_the_ranges() -> None:
    for buckets in (FEED_LATENCY_BUCKETS, PROCESSING_BUCKETS):
        assert list(buckets) == sorted(set(buckets))
    assert FEED_LATENCY_BUCKETS[0] <= 0.01 and FEED_LATENCY_BUCKETS[-1] >= 300
    assert PROCESSING_BUCKETS[0] <= 0.000005 and PROCESSING_BUCKETS[-1] >= 0.25
