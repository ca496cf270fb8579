"""`top` as a user sees it: a command in a detached tmux pane of a fixed size, read with capture-pane.

Each `Pane` runs on its own tmux server (`-S`, a unique socket file), so parallel tests never share one,
and `close()` kills that server and removes its socket. The command runs under
`sh -c '...; echo "[exited N]"; sleep'` so a crash stays on screen for the failure message instead of
closing the pane.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence

from tests.helpers import ConditionTimeout, find_binary, wait_for

EXITED = re.compile(r"\[exited (\d+)\]")
#: The header's clock (HH:MM:SS of the scrape): it changes on every refresh of the live view.
CLOCK = re.compile(r"top\s+(\d\d:\d\d:\d\d)\s")


class Pane:
    def __init__(self, argv: Sequence[str], *, width: int, height: int, env: Mapping[str, str], cwd: str):
        self.tmux = find_binary("tmux")
        self.socket = os.path.join(tempfile.gettempdir(), f"dydx-top-{uuid.uuid4().hex[:12]}.sock")
        self.argv = list(argv)
        self.width, self.height = width, height
        self.env = dict(env)
        self.cwd = cwd

    async def _tmux(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.tmux, "-S", self.socket, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=self.env,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 20)
        if proc.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {err.decode(errors='replace')}")
        return out.decode(errors="replace")

    async def start(self) -> Pane:
        command = " ".join(shlex.quote(arg) for arg in self.argv)
        wrapped = f'{command}; echo "[exited $?]"; sleep 600'
        # The server (one per pane) inherits `env`; tmux itself sets TERM in the pane, as a terminal would.
        await self._tmux(
            "-f", "/dev/null", "new-session", "-d", "-x", str(self.width), "-y", str(self.height),
            "-c", self.cwd, "sh", "-c", wrapped,
        )  # fmt: skip
        return self

    async def text(self, escapes: bool = False) -> str:
        """The visible screen (with its SGR colour sequences when `escapes`)."""
        return await self._tmux("capture-pane", "-p", *(["-e"] if escapes else []))

    async def keys(self, *keys: str) -> None:
        await self._tmux("send-keys", *keys)

    async def wait_text(self, predicate: Callable[[str], object], timeout: float, message: str) -> str:
        """The screen once `predicate(screen)` is truthy; fails early if the command exited."""
        last = ""

        async def check() -> str | None:
            nonlocal last
            last = await self.text()
            if predicate(last):
                return last
            if EXITED.search(last):
                raise AssertionError(f"top exited; screen:\n{last}")
            return None

        try:
            return str(await wait_for(check, timeout=timeout, interval=0.1, message=message))
        except ConditionTimeout as exc:
            raise AssertionError(f"{exc}\nlast screen:\n{last}") from None

    async def within_refreshes(self, predicate: Callable[[str], object], refreshes: int, message: str) -> str:
        """The screen once `predicate` holds; fails if the live view redrew from `refreshes` new scrapes
        (header clock changes) without it. A wall-clock bound stops a view that stopped refreshing."""
        seen: list[str] = []
        last = ""

        async def check() -> str | None:
            nonlocal last
            last = await self.text()
            clock = CLOCK.search(last)
            if clock and (not seen or seen[-1] != clock.group(1)):
                seen.append(clock.group(1))
            if predicate(last):
                return last
            if len(seen) > refreshes:  # seen[0] is the frame on screen when the wait began
                raise AssertionError(f"{message}: not shown within {refreshes} refreshes; screen:\n{last}")
            return None

        try:
            return str(await wait_for(check, timeout=30, interval=0.1, message=message))
        except ConditionTimeout as exc:
            raise AssertionError(f"{exc}\nlast screen:\n{last}") from None

    async def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError):  # already gone
            await self._tmux("kill-server")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)
