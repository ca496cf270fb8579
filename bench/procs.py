"""Running a benchmark function in a fresh process, so that it has a core (and an RSS) of its own.

`forkserver`, not `fork`: a child never inherits the parent's event loop, sockets or threads; the fork
server preloads the heavy imports once, so a child starts in tens of milliseconds instead of the few
hundred a `spawn` costs.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

CONTEXT = mp.get_context("forkserver")
CONTEXT.set_forkserver_preload(["bench.consumers", "bench.source", "bench.scenarios"])


class ChildFailed(RuntimeError):
    pass


def _trampoline(fn: Callable[..., Any], args: tuple[Any, ...], conn: Connection) -> None:
    try:
        result = fn(*args)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    else:
        conn.send(("ok", result))
    finally:
        conn.close()


def run_in_process(fn: Callable[..., Any], *args: Any, timeout: float = 300.0) -> Any:
    """Call `fn(*args)` in a new process and return its (picklable) result; kill it past `timeout`."""
    parent, child = CONTEXT.Pipe(duplex=False)
    proc = CONTEXT.Process(target=_trampoline, args=(fn, args, child), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise ChildFailed(f"{getattr(fn, '__name__', fn)} did not finish within {timeout:.0f}s")
        status, payload = parent.recv()
        if status == "error":
            raise ChildFailed(f"{getattr(fn, '__name__', fn)} failed in its process:\n{payload}")
        return payload
    finally:
        parent.close()
        stop_process(proc)


def stop_process(proc: Any, grace: float = 5.0) -> None:
    """Join `proc`, escalating to SIGTERM then SIGKILL; never leaves it running."""
    proc.join(grace)
    if proc.is_alive():
        proc.terminate()
        proc.join(2.0)
    if proc.is_alive():
        proc.kill()
        proc.join(2.0)


def rss_bytes(pid: int | None = None) -> int:
    """Current resident set size of a process (this one by default), from /proc."""
    with open(f"/proc/{pid or os.getpid()}/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")
