"""The exposition's building blocks: sample values as both text formats spell them, label escaping, and
the hot path's histogram (plain ints and a float, observed without a `.labels()` lookup)."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping


def fmt(value: float) -> str:
    """A sample value as both exposition formats spell it."""
    if type(value) is int:
        return str(value)
    if value != value:
        return "NaN"
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    return repr(float(value))


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def by_label(out: list[str], name: str, label: str, values: Iterable[tuple[str, float]]) -> None:
    """One sample per (label value, sample value) of `values`, in their order."""
    out.extend(f'{name}{{{label}="{escape(key)}"}} {fmt(value)}\n' for key, value in values)


def labelled(
    out: list[str], name: str, labels: tuple[str, str], table: Mapping[tuple[str, str], int]
) -> None:
    """One sample per (first, second) label pair of `table`, sorted."""
    first, second = labels
    for (a, b), value in sorted(table.items()):
        out.append(f'{name}{{{first}="{escape(a)}",{second}="{escape(b)}"}} {value}\n')


class Histogram:
    """Cumulative buckets are computed at render time; `counts[i]` holds the observations of bucket i
    alone (the last one is +Inf). Everything that touches the internals is a method here."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """One observation; a negative value (an exchange clock ahead of ours) counts as zero."""
        if value > 0.0:
            self.counts[bisect_left(self.bounds, value)] += 1
            self.sum += value
        else:
            self.counts[0] += 1

    @property
    def count(self) -> int:
        return sum(self.counts)

    def render(self, name: str, labels: str, out: list[str]) -> None:
        """`labels` is the pre-formatted label text without braces ('' for none)."""
        sep = "," if labels else ""
        cumulative = 0
        counts = self.counts
        for i, bound in enumerate(self.bounds):
            cumulative += counts[i]
            out.append(f'{name}_bucket{{{labels}{sep}le="{fmt(bound)}"}} {cumulative}\n')
        cumulative += counts[-1]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {cumulative}\n')
        braces = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_count{braces} {cumulative}\n")
        out.append(f"{name}_sum{braces} {fmt(self.sum)}\n")
