"""Failures of the indexer's endpoints: as bounded reasons for metrics, and as sentences for the log.

Both the WebSocket links and REST discovery log why a request failed. `str()` of aiohttp's errors is
already a sentence ("Cannot connect to host 127.0.0.1:1 ssl:default [...]"), while `repr()` is Python
syntax and some errors (a timeout) have no text at all: `describe` gives one readable line for each.
`classify_connect_error` and `penalty_seconds` turn a failed handshake or a penalty close into the
bounded `reason` of dydx_ws_connection_failures_total and the wait the server asked for.
"""

from __future__ import annotations

import errno
from typing import Final

import aiohttp
import orjson

from exporter.feed.backoff import MAX_RETRY_AFTER_S, parse_retry_after
from exporter.protocol import channels as ch

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


def classify_connect_error(exc: BaseException) -> tuple[str, float]:
    """A handshake failure → (bounded reason, seconds the server asked us to wait)."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        if exc.status == 429:
            headers = exc.headers
            retry_after = parse_retry_after(headers.get("Retry-After") if headers else None)
            # socks' reconnect penalty after a 4008 says so; any other 429 is the edge's rate limit.
            if headers and headers.get(ch.RATELIMIT_REASON_HEADER) == ch.RATELIMIT_REASON_ABUSE:
                return "penalized", retry_after
            return "http_429", retry_after
        return ("http_error" if exc.status >= 400 else "handshake"), 0.0
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "dns", 0.0
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return "tls", 0.0
    if isinstance(exc, aiohttp.ClientConnectorError):
        if exc.os_error.errno == errno.ECONNREFUSED or isinstance(exc.os_error, ConnectionRefusedError):
            return "refused", 0.0
        return "other", 0.0
    if isinstance(exc, TimeoutError):
        return "timeout", 0.0
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | ConnectionError):
        return "reset", 0.0
    return "other", 0.0


def penalty_seconds(close_reason: str) -> float:
    """How long a 4008 close asks the client to stay away: its JSON reason's `retryAfterSeconds`, or
    socks' 30 s when the reason does not say."""
    try:
        seconds = orjson.loads(close_reason).get("retryAfterSeconds")
    except (orjson.JSONDecodeError, AttributeError):
        seconds = None
    if (
        isinstance(seconds, int | float)
        and not isinstance(seconds, bool)
        and 0 < seconds <= MAX_RETRY_AFTER_S
    ):
        return float(seconds)
    return float(ch.RECONNECT_PENALTY_S)
