"""Failures of the indexer's endpoints as sentences a person reads in a log line.

Both the WebSocket links and REST discovery log why a request failed. `str()` of aiohttp's errors is
already a sentence ("Cannot connect to host 127.0.0.1:1 ssl:default [...]"), while `repr()` is Python
syntax and some errors (a timeout) have no text at all: this gives one readable line for each.
"""

from __future__ import annotations

from typing import Final

#: Longer texts (a server echoing a whole page back) are cut at a word boundary and marked.
MAX_TEXT: Final = 300


def describe(exc: BaseException) -> str:
    """What went wrong, as a sentence: the error's own text, or what its kind means when it has none."""
    if isinstance(exc, TimeoutError):
        text = str(exc) or "timed out"
    else:
        text = str(exc).strip() or _words(type(exc).__name__)
    return shorten(text)


def shorten(text: str, limit: int = MAX_TEXT) -> str:
    """`text` on one line, at most `limit` characters (cut at a space, with an ellipsis)."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line.rfind(" ", 0, limit - 1)
    return line[: cut if cut > limit // 2 else limit - 1] + "…"


def _words(name: str) -> str:
    """`ServerDisconnectedError` → `server disconnected error`."""
    out: list[str] = []
    for char in name:
        if char.isupper() and out:
            out.append(" ")
        out.append(char.lower())
    return "".join(out)
