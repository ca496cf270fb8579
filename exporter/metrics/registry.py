"""Which code renders which metric of the catalog: renderers live beside the state they read.

A `MetricSource` is a class holding some exported state; each of its renderers is a method marked with
`@renders(SPEC)`, called at scrape time as `method(name, out, now)` to append that family's samples to
`out`. `check(sources)` proves the sources cover the catalog exactly: every metric has one renderer and
every renderer a metric. exporter.metrics.collector runs it at import over every source class, so a metric
added to the catalog without a renderer (or the reverse) fails at import, not at the first scrape.
Adding a metric: one catalog entry, one `@renders` method beside its state, or for the two common shapes
a line in the class body: `scalar(SPEC, "attribute")` (one unlabelled sample) or `per_row(SPEC, rows,
value)` (one sample per row of a table, under the row's rendered `label`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

from exporter.metrics import catalog as c
from exporter.metrics.histogram import fmt

#: (metric name, out, scrape time) → appends the family's sample lines to out.
Renderer = Callable[[str, list[str], float], None]
_F = TypeVar("_F", bound=Callable[..., None])


def renders(spec: c.MetricSpec) -> Callable[[_F], _F]:
    """Marks a MetricSource method as the renderer of `spec`."""

    def mark(method: _F) -> _F:
        method.__dict__["renders"] = spec
        return method

    return mark


def scalar(spec: c.MetricSpec, attr: str) -> Callable[[Any, str, list[str], float], None]:
    """The renderer of a family of one unlabelled sample, the value of attribute `attr`."""

    @renders(spec)
    def render(self: Any, name: str, out: list[str], now: float) -> None:
        out.append(f"{name} {fmt(getattr(self, attr))}\n")

    return render


def per_row(
    spec: c.MetricSpec, rows: Callable[[Any], Iterable[Any]], value: Callable[[Any], float | None]
) -> Callable[[Any, str, list[str], float], None]:
    """The renderer of a family of one sample per row of `rows(self)`, labelled with the row's rendered
    `label` and valued `value(row)`: a number (a flag as 1 or 0, never a bool, which `fmt` would spell
    1.0), or None to leave the row out (not known yet)."""

    @renders(spec)
    def render(self: Any, name: str, out: list[str], now: float) -> None:
        for row in rows(self):
            sample = value(row)
            if sample is not None:
                out.append(f"{name}{{{row.label}}} {fmt(sample)}\n")

    return render


class MetricSource:
    #: spec → name of the method that renders it (collected from the @renders marks at class creation).
    RENDERS: ClassVar[dict[c.MetricSpec, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[c.MetricSpec, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                spec = getattr(value, "renders", None)
                if isinstance(spec, c.MetricSpec):
                    found[spec] = attr
        cls.RENDERS = found

    def renderers(self) -> dict[c.MetricSpec, Renderer]:
        return {spec: getattr(self, attr) for spec, attr in self.RENDERS.items()}


def check(sources: Iterable[type[MetricSource]], catalog: Iterable[c.MetricSpec] = c.CATALOG) -> None:
    """Raises RuntimeError unless `sources` render every metric of `catalog` once, and nothing else."""
    owners: dict[c.MetricSpec, list[str]] = {}
    for source in sources:
        for spec in source.RENDERS:
            owners.setdefault(spec, []).append(source.__name__)
    wanted = list(catalog)
    problems = [f"{spec.name}: no renderer" for spec in wanted if spec not in owners]
    problems += [
        f"{spec.name}: rendered by {', '.join(names)}" for spec, names in owners.items() if len(names) > 1
    ]
    problems += [f"{spec.name}: rendered but not in the catalog" for spec in owners if spec not in wanted]
    if problems:
        raise RuntimeError("metric renderers out of step with the catalog: " + "; ".join(sorted(problems)))
