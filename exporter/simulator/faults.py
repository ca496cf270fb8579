"""Fault kinds of the control API: validation of a request, and the set of faults in force.

Instant kinds act once on the connections open at the time (disconnect, malformed, error, gap). Lasting
kinds stay in force until cleared or until their `seconds` run out (stall, cross, lag, reject, rest_error,
rest_slow, silent); without `seconds` they last until cleared. For `lag`, `seconds` is the lag itself and
`duration` bounds how long it lasts.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from exporter.protocol import channels as ch

INSTANT_KINDS: Final = ("disconnect", "malformed", "error", "gap")
LASTING_KINDS: Final = ("stall", "cross", "lag", "reject", "rest_error", "rest_slow", "silent")
KINDS: Final = INSTANT_KINDS + LASTING_KINDS

# kind → {field: (type check, default)}; `...` as a default means required.
_NUMBER = (int, float)
_FIELDS: Final[dict[str, dict[str, tuple[tuple[type, ...], Any]]]] = {
    "disconnect": {
        "code": ((int,), ch.CLOSE_SERVICE_RESTARTING),
        "abrupt": ((bool,), False),
        "reason": ((str,), None),
    },
    "stall": {"seconds": (_NUMBER, None), "channel": ((str,), None)},
    "malformed": {"count": ((int,), 1)},
    "error": {"text": ((str,), ch.ERR_INTERNAL)},
    "gap": {"count": ((int,), 1)},
    "cross": {"market": ((str,), ...), "seconds": (_NUMBER, None)},
    "lag": {"seconds": (_NUMBER, ...), "duration": (_NUMBER, None)},
    "reject": {"seconds": (_NUMBER, None), "status": ((int,), 429), "retry_after": (_NUMBER, None)},
    "rest_error": {"seconds": (_NUMBER, None), "status": ((int,), 500), "snapshots": ((bool,), True)},
    "rest_slow": {"seconds": (_NUMBER, None), "delay": (_NUMBER, ...)},
    "silent": {"seconds": (_NUMBER, None)},
}


class FaultError(ValueError):
    """A control request that cannot be applied; the message says what is wrong."""


def parse(body: object) -> tuple[str, dict[str, Any]]:
    """Validate a `POST /control/faults` body → (kind, params with defaults filled in)."""
    if not isinstance(body, dict):
        raise FaultError('body must be a JSON object such as {"kind": "stall", "seconds": 5}')
    kind = body.get("kind")
    if kind not in _FIELDS:
        raise FaultError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    fields = _FIELDS[kind]
    unknown = sorted(set(body) - set(fields) - {"kind"})
    if unknown:
        raise FaultError(f"unknown field(s) for {kind}: {', '.join(unknown)}; allowed: {', '.join(fields)}")
    params: dict[str, Any] = {}
    for name, (types, default) in fields.items():
        value = body.get(name)
        if value is None:
            if default is ...:
                raise FaultError(f"{kind} needs {name!r}")
            params[name] = default
            continue
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            expected = " or ".join(t.__name__ for t in types)
            raise FaultError(f"{kind}.{name} must be {expected}, not {value!r}")
        params[name] = value
    _check_ranges(kind, params)
    return kind, params


def _check_ranges(kind: str, p: dict[str, Any]) -> None:
    for name in ("seconds", "duration", "delay", "retry_after"):
        if (
            p.get(name) is not None
            and not 0 < p[name] <= 86400
            and not (name == "retry_after" and p[name] == 0)
        ):
            raise FaultError(f"{kind}.{name} must be > 0 and <= 86400 seconds, not {p[name]!r}")
    if kind in ("malformed", "gap") and not 1 <= p["count"] <= 10_000:
        raise FaultError(f"{kind}.count must be between 1 and 10000, not {p['count']!r}")
    if kind == "disconnect" and not (
        p["abrupt"]
        or p["code"] == 1000
        or 3000 <= p["code"] <= 4999
        or p["code"] in (1001, 1008, 1011, 1012, 1013)
    ):
        raise FaultError(
            f"disconnect.code must be 1000, 1001, 1008, 1011, 1012, 1013 or 3000-4999, not {p['code']}"
        )
    if kind in ("reject", "rest_error") and not 400 <= p["status"] <= 599:
        raise FaultError(f"{kind}.status must be an HTTP error status (400-599), not {p['status']}")
    if kind == "stall" and p["channel"] is not None and p["channel"] not in ch.ALL_CHANNELS:
        raise FaultError(f"stall.channel must be one of {', '.join(ch.ALL_CHANNELS)}, not {p['channel']!r}")


@dataclass
class Fault:
    id: int
    kind: str
    params: dict[str, Any]
    started: float
    expires: float | None

    def remaining(self, now: float) -> float | None:
        return None if self.expires is None else max(0.0, self.expires - now)

    def describe(self, now: float) -> dict[str, Any]:
        remaining = self.remaining(now)
        return {
            "id": self.id,
            "kind": self.kind,
            **self.params,
            "remaining_seconds": None if remaining is None else round(remaining, 3),
        }


class Faults:
    """Lasting faults in force. Expiry is applied by `expire()`, which the server calls periodically."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ids = itertools.count(1)
        self._active: list[Fault] = []

    def add(self, kind: str, params: Mapping[str, Any]) -> Fault:
        now = self._clock()
        length = params.get("duration") if kind == "lag" else params.get("seconds")
        fault = Fault(
            next(self._ids), kind, dict(params), now, None if length is None else now + float(length)
        )
        self._active.append(fault)
        return fault

    def expire(self) -> list[Fault]:
        now = self._clock()
        ended = [f for f in self._active if f.expires is not None and f.expires <= now]
        if ended:
            self._active = [f for f in self._active if f not in ended]
        return ended

    def clear(self) -> list[Fault]:
        ended, self._active = self._active, []
        return ended

    def active(self, kind: str | None = None) -> list[Fault]:
        return [f for f in self._active if kind is None or f.kind == kind]

    def latest(self, kind: str) -> Fault | None:
        for fault in reversed(self._active):
            if fault.kind == kind:
                return fault
        return None

    def describe(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [f.describe(now) for f in self._active]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(LASTING_KINDS, 0)
        for fault in self._active:
            counts[fault.kind] += 1
        return counts
