"""What every owner of background work needs: end its tasks for certain, and stop on SIGINT or SIGTERM.

`await cancel_and_wait(*tasks)` in a `stop()`: the tasks are cancelled and awaited, so nothing they hold
outlives their owner; a component with one background loop holds a `BackgroundTask` for it instead.
`with StopSignals() as stop: ... await stop.wait()` in a process's main coroutine: the first SIGINT or
SIGTERM sets it, and the handlers are removed again on leaving.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel `tasks` (None entries are skipped) and wait until each has ended.

    What a task raised is not re-raised: a stop() must finish stopping. A cancellation of the caller
    itself still propagates (unlike `suppress(CancelledError)` around `await task`).
    """
    owned = [task for task in tasks if task is not None]
    for task in owned:
        task.cancel()
    await asyncio.gather(*owned, return_exceptions=True)


class BackgroundTask:
    """The one named task a component runs between its start() and stop(). A second start() while it
    runs does nothing; stop() cancels and awaits it, and may be called again or without a start()."""

    __slots__ = ("_task", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._task: asyncio.Task[None] | None = None

    def start(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `run()` as the task, unless it runs already (then `run` is not called)."""
        if self._task is None:
            self._task = asyncio.create_task(run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)


class StopSignals:
    """SIGINT and SIGTERM on the running loop set `stop`, while inside `with`; `received` names them."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.received: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> StopSignals:
        self._loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            self._loop.add_signal_handler(sig, self._on_signal, sig)
        return self

    def __exit__(self, *exc: object) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self.received.append(sig.name)
        self.stop.set()

    @property
    def first(self) -> str:
        """The first signal's name ("SIGTERM"), or "" when none came."""
        return self.received[0] if self.received else ""

    async def wait(self) -> None:
        await self.stop.wait()
