"""Shared test helpers: waiting on conditions with deadlines, scraping, finding binaries.

One helper per idea: extend these rather than writing another wait loop or scrape parser.
"""

from __future__ import annotations

import asyncio
import inspect
import shutil
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")


class ConditionTimeout(AssertionError):
    pass


@overload
async def wait_for(
    condition: Callable[[], Awaitable[T]], timeout: float = ..., interval: float = ..., message: str = ...
) -> T: ...
@overload
async def wait_for(
    condition: Callable[[], T], timeout: float = ..., interval: float = ..., message: str = ...
) -> T: ...
async def wait_for(
    condition: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "",
) -> Any:
    """Poll `condition` (sync or async) until it returns something truthy; fail after `timeout` seconds.

    Returns the truthy value, so a test can wait for and fetch a value in one step.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        last = result
        if time.monotonic() >= deadline:
            what = message or repr(condition)
            raise ConditionTimeout(f"condition not met within {timeout}s: {what} (last={last!r})")
        await asyncio.sleep(interval)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """Prometheus text exposition → {(sample name, sorted label items): value}."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


async def scrape(url: str, session: aiohttp.ClientSession | None = None) -> Samples:
    own = session is None
    session = session or aiohttp.ClientSession()
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            resp.raise_for_status()
            return parse_metrics(await resp.text())
    finally:
        if own:
            await session.close()


def metric_sum(samples: Samples, name: str, **labels: str) -> float:
    """Sum of every sample called `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and want <= set(lbls))


def metric_value(samples: Samples, name: str, **labels: str) -> float | None:
    """The one sample called `name` with exactly `labels`, or None."""
    return samples.get((name, tuple(sorted(labels.items()))))


def find_binary(*names: str) -> str:
    """Path of the first of `names` on PATH (Debian calls Alertmanager `prometheus-alertmanager`)."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError(f"none of {names} on PATH; run `make tools`")
