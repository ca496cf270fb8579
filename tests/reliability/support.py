"""What the reliability tests measure: process resources (tasks, fds, sockets, RSS), readiness over time,
handshakes and subscribes seen by the simulator. The soak (tests/soak.py) uses the same probes.

Everything reads real state: /proc for the process, the exporter's own /readyz and /metrics, and the
simulator's ground truth at its /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field

import aiohttp

from exporter.lifecycle import cancel_and_wait
from tests.groundtruth.support import published
from tests.helpers import ConditionTimeout, Samples, metric_sum, wait_for

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class Resources:
    """One sample of a process's resources. `tasks` is -1 for another process (not observable)."""

    tasks: int
    fds: int
    sockets: int
    rss_bytes: int

    def over(self, baseline: Resources, slack: Slack) -> list[str]:
        """What exceeds `baseline` by more than `slack` (empty: back to baseline)."""
        excess = []
        if self.tasks >= 0 and self.tasks > baseline.tasks + slack.tasks:
            excess.append(f"tasks {baseline.tasks} -> {self.tasks}")
        if self.fds > baseline.fds + slack.fds:
            excess.append(f"fds {baseline.fds} -> {self.fds}")
        if self.sockets > baseline.sockets + slack.sockets:
            excess.append(f"sockets {baseline.sockets} -> {self.sockets}")
        return excess


@dataclass(frozen=True, slots=True)
class Slack:
    """Allowed excess over a baseline once everything has settled.

    A task or two may be in flight at any instant (a scrape of the test itself, aiohttp's connector
    cleanup); one socket may be a pooled keep-alive HTTP connection (REST discovery, the test's scrape).
    """

    tasks: int = 2
    fds: int = 2
    sockets: int = 2


def resources(pid: int | None = None) -> Resources:
    """Tasks (this process only), open fds, of which sockets, and resident memory of `pid` (default self)."""
    proc = f"/proc/{pid or 'self'}"
    fds = sockets = 0
    for name in os.listdir(f"{proc}/fd"):
        fds += 1
        with contextlib.suppress(OSError):  # closed between listdir and readlink
            if os.readlink(f"{proc}/fd/{name}").startswith("socket:"):
                sockets += 1
    with open(f"{proc}/statm") as statm:
        rss_pages = int(statm.read().split()[1])
    tasks = len(asyncio.all_tasks()) if pid is None else -1
    return Resources(tasks=tasks, fds=fds, sockets=sockets, rss_bytes=rss_pages * _PAGE_SIZE)


async def settle(baseline: Resources, slack: Slack = Slack(), timeout: float = 5.0) -> Resources:
    """Waits until this process is back within `slack` of `baseline`; fails naming what leaked."""
    last = resources()

    def back() -> bool:
        nonlocal last
        last = resources()
        return not last.over(baseline, slack)

    try:
        await wait_for(back, timeout=timeout, interval=0.05)
    except ConditionTimeout:
        tasks = sorted(t.get_name() + ":" + repr(t.get_coro())[:80] for t in asyncio.all_tasks())
        raise AssertionError(
            f"resources did not return to baseline: {last.over(baseline, slack)}; tasks: {tasks}"
        ) from None
    return last


@dataclass
class ReadinessTrace:
    """Polls /readyz in the background and keeps every status change as (monotonic time, status, body).

    A transition shorter than `interval` can be missed: tests make the red phase long enough to see (a
    snapshot delay on the simulator keeps subscriptions pending for a while after each reconnect).
    """

    url: str
    interval: float = 0.02
    changes: list[tuple[float, int, str]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ReadinessTrace:
        self._task = asyncio.create_task(self._poll(), name="readiness-trace")
        await wait_for(lambda: bool(self.changes), timeout=5, message="first /readyz answer")
        return self

    async def __aexit__(self, *exc: object) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _poll(self) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    async with session.get(self.url + "/readyz") as resp:
                        status, body = resp.status, await resp.text()
                except aiohttp.ClientError as exc:
                    status, body = 0, repr(exc)
                if not self.changes or self.changes[-1][1] != status:
                    self.changes.append((time.monotonic(), status, body))
                await asyncio.sleep(self.interval)

    @property
    def status(self) -> int:
        return self.changes[-1][1] if self.changes else 0

    def went_red_since(self, since: float) -> tuple[float, str] | None:
        """(time, body) of the first non-200 answer at or after `since`."""
        for at, status, body in self.changes:
            if at >= since and status != 200:
                return at, body
        return None

    def green_after(self, since: float) -> float | None:
        """Time of the first 200 after the first non-200 at or after `since`."""
        red = self.went_red_since(since)
        if red is None:
            return None
        for at, status, _ in self.changes:
            if at > red[0] and status == 200:
                return at
        return None

    async def wait_green_after(self, since: float, timeout: float) -> float:
        """Waits for red-then-green after `since`; returns the time green came back."""

        def green() -> float | None:
            return self.green_after(since)

        at: float | None = await wait_for(
            green,
            timeout=timeout,
            interval=0.02,
            message=f"/readyz red then green again; changes: {self.describe()}",
        )
        assert at is not None
        return at

    def describe(self) -> str:
        if not self.changes:
            return "none"
        t0 = self.changes[0][0]
        return "; ".join(
            f"+{at - t0:.2f}s {status} {body.strip()[:120]!r}" for at, status, body in self.changes
        )


# --- the simulator's ground truth ---------------------------------------------------------------------


#: The simulator's /metrics (what it published, accepted, rejected and received); one definition, in
#: tests.groundtruth.support, next to its /control/truth.
truth = published


def handshakes(samples: Samples) -> float:
    """WebSocket handshakes the simulator saw: accepted plus refused by reject faults."""
    return metric_sum(samples, "dydx_simulator_connections_opened_total") + metric_sum(
        samples, "dydx_simulator_handshakes_rejected_total"
    )


def subscribes(samples: Samples) -> float:
    return metric_sum(samples, "dydx_simulator_client_messages_total", kind="subscribe")


def sum_any(samples: Samples, name: str, **labels: str) -> float:
    """metric_sum where a label value "a|b" matches either value (a bounded reason that may be split)."""
    total = 0.0
    for (sample, items), value in samples.items():
        if sample != name:
            continue
        have = dict(items)
        if all(have.get(k) in v.split("|") for k, v in labels.items()):
            total += value
    return total
