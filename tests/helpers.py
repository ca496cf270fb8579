"""Shared test helpers: waiting on conditions with deadlines, scraping, finding binaries, free ports, and
child processes that never outlive their test.

One helper per idea: extend these rather than writing another wait loop or scrape parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import aiohttp
import orjson
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


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 right now, for a binary that needs a number, not 0.

    The sockets are held until all are bound, so the ports differ; another process may still take one
    before the caller binds it (rare on loopback with the kernel's ephemeral range).
    """
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)
        ]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def free_port() -> int:
    (port,) = free_ports(1)
    return port


# --- child processes -------------------------------------------------------------------------------------


async def kill_if_running(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL `proc` unless it has exited, and reap it: what every test's `finally` owes a child."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def stop_process(proc: asyncio.subprocess.Process, grace: float = 10.0) -> int:
    """SIGTERM `proc`, give it `grace` seconds to exit, then SIGKILL; returns its exit status."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), grace)
    await kill_if_running(proc)
    assert proc.returncode is not None
    return proc.returncode


class LoggedProcess:
    """A child started with `stderr=PIPE` whose stderr is JSON log lines (`--log.format json`), collected
    into `events` as they come (a line that is not JSON is kept as {"event": "raw", "line": ...})."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            try:
                self.events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                self.events.append({"event": "raw", "line": line.decode(errors="replace")})

    def event(self, name: str) -> dict[str, Any] | None:
        """The first log event called `name` so far."""
        return next((e for e in self.events if e.get("event") == name), None)

    async def wait_event(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        """Waits for the first log event called `name`; fails early if the process exits first."""

        def found() -> dict[str, Any] | None:
            event = self.event(name)
            if event is None and self.proc.returncode is not None and self._reader.done():
                raise AssertionError(f"exited with {self.proc.returncode} before {name}: {self.events[-5:]}")
            return event

        event = await wait_for(found, timeout=timeout, message=f"log event {name}")
        assert event is not None
        return event

    async def stop(self, grace: float = 10.0) -> int:
        """SIGTERM, SIGKILL after `grace`; returns the exit status once every log line has been read."""
        try:
            return await stop_process(self.proc, grace)
        finally:
            await self.close()

    async def close(self) -> None:
        """SIGKILL if still running, and drain the log reader."""
        await kill_if_running(self.proc)
        await asyncio.gather(self._reader, return_exceptions=True)
