"""The one place `top` turns scrapes into numbers: a parsed scrape, gauges summed by label, counter
increases and rates between two scrapes, and quantiles of the histogram observations made in between.

The arithmetic follows PromQL so `top` and the dashboards agree: a counter that went down was reset and
counts from zero (as `increase()` does), and a quantile interpolates linearly inside its bucket, with the
+Inf bucket answering the highest finite bound (as `histogram_quantile()` does).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

#: A series' labels, sorted, so the same series in two scrapes is the same key.
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Scrape:
    """One /metrics body: sample name → {labels: value}, taken at `monotonic` (for intervals) and `wall`
    (Unix time, for ages of the exporter's timestamps)."""

    monotonic: float
    wall: float
    series: Mapping[str, Mapping[Labels, float]] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return bool(self.series.get(name))

    def items(self, name: str, **match: str) -> Iterable[tuple[dict[str, str], float]]:
        """(labels, value) of every sample called `name` whose labels include `match`."""
        for labels, value in self.series.get(name, {}).items():
            found = dict(labels)
            if all(found.get(k) == v for k, v in match.items()):
                yield found, value

    def total(self, name: str, **match: str) -> float:
        """Sum of the samples called `name` matching `match` (0 when there are none)."""
        return sum(value for _, value in self.items(name, **match))

    def value(self, name: str, **match: str) -> float | None:
        """The sum of the matching samples, or None when there are none (a metric that does not exist)."""
        values = [value for _, value in self.items(name, **match)]
        return sum(values) if values else None

    def by(self, name: str, label: str, **match: str) -> dict[str, float]:
        """Samples called `name` matching `match`, summed by the value of `label`."""
        out: dict[str, float] = defaultdict(float)
        for labels, value in self.items(name, **match):
            out[labels.get(label, "")] += value
        return dict(out)


def parse(text: str, monotonic: float, wall: float) -> Scrape:
    """A Prometheus text exposition → Scrape. Raises ValueError on a body that is not one."""
    series: dict[str, dict[Labels, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[sample.name][tuple(sorted(sample.labels.items()))] = float(sample.value)
    return Scrape(monotonic, wall, dict(series))


def interval(prev: Scrape, cur: Scrape) -> float:
    """Seconds between two scrapes (never zero, so rates stay finite)."""
    return max(cur.monotonic - prev.monotonic, 1e-9)


def increases(
    prev: Scrape, cur: Scrape, name: str, label: str | None = None, **match: str
) -> dict[str, float]:
    """How much the counter `name` grew from `prev` to `cur`, summed by `label` ("" without one).

    A series that went down was reset and counts from zero; a series new in `cur` counts from zero too
    (the exporter creates some label values on first use, e.g. a market's first trade).
    """
    before = prev.series.get(name, {})
    out: dict[str, float] = defaultdict(float)
    for labels, now in cur.series.get(name, {}).items():
        found = dict(labels)
        if not all(found.get(k) == v for k, v in match.items()):
            continue
        then = before.get(labels, 0.0)
        out[found.get(label, "") if label else ""] += now - then if now >= then else now
    return dict(out)


def increase(prev: Scrape, cur: Scrape, name: str, **match: str) -> float:
    return sum(increases(prev, cur, name, **match).values())


def rates(prev: Scrape, cur: Scrape, name: str, label: str | None = None, **match: str) -> dict[str, float]:
    """Per-second growth of the counter `name` between the scrapes, by `label`."""
    seconds = interval(prev, cur)
    return {key: grown / seconds for key, grown in increases(prev, cur, name, label, **match).items()}


def rate(prev: Scrape, cur: Scrape, name: str, **match: str) -> float:
    return increase(prev, cur, name, **match) / interval(prev, cur)


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """`histogram_quantile(q, ...)` of cumulative (upper bound, count) buckets, +Inf included; None when
    the buckets hold no observation."""
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]):
        return None
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if math.isinf(upper):  # above the highest finite bound: that bound is the best answer
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * ((rank - below) / (count - below))  # Prometheus's order
        lower, below = upper, count
    return None  # not reached: the +Inf bucket holds every observation


def window_quantiles(
    prev: Scrape, cur: Scrape, histogram: str, label: str, qs: Sequence[float]
) -> dict[str, tuple[float | None, ...]]:
    """Quantiles `qs` of the observations the histogram `histogram` (its base name) received between the
    scrapes, by `label`: the bucket increases are a histogram of just that interval."""
    grown: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    before = prev.series.get(f"{histogram}_bucket", {})
    for labels, now in cur.series.get(f"{histogram}_bucket", {}).items():
        found = dict(labels)
        try:
            upper = float(found["le"])
        except (KeyError, ValueError):
            continue
        then = before.get(labels, 0.0)
        grown[found.get(label, "")][upper] += now - then if now >= then else now
    return {key: tuple(quantile(q, list(buckets.items())) for q in qs) for key, buckets in grown.items()}
