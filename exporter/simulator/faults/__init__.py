"""The simulator's fault kinds, one registry entry each, and the faults in force.

`KINDS` is the registry: each entry (a `base.FaultKind`) names its typed parameters (its schema), whether
it lasts, and how it starts and ends; its behaviour lives in the module beside it (`connection.py`,
`feed.py`, `rest.py`, `chain.py`). The control API validates requests against it (`parse`) and lists it
(`GET /control/`); the tests' fault matrix and soak take their kinds from it. Adding a kind is one
parameter dataclass, its start/end functions in a behaviour module, and one entry below.

Instant kinds act once on the connections open at the time. Lasting kinds stay in force until cleared or
until their length (`seconds`; for `lag`, `duration`) runs out; without it they last until cleared.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from exporter.simulator.faults import chain, connection, feed, quality, rest
from exporter.simulator.faults.base import FaultError, FaultKind, as_dict

__all__ = ["INSTANT_KINDS", "KINDS", "LASTING_KINDS", "Fault", "FaultError", "FaultKind", "Faults", "parse"]


def _registry(*kinds: FaultKind[Any]) -> Mapping[str, FaultKind[Any]]:
    names = [k.name for k in kinds]
    if len(set(names)) != len(names):
        raise RuntimeError(f"fault kinds registered twice: {names}")
    return {k.name: k for k in kinds}


KINDS: Final = _registry(
    connection.DISCONNECT,
    connection.MALFORMED,
    connection.ERROR,
    connection.GAP,
    feed.STALL,
    feed.CROSS,
    feed.LAG,
    connection.REJECT,
    connection.PENALTY,
    rest.REST_ERROR,
    rest.REST_SLOW,
    connection.SILENT,
    *chain.KINDS,
    *quality.KINDS,
)
INSTANT_KINDS: Final = tuple(name for name, kind in KINDS.items() if kind.length is None)
LASTING_KINDS: Final = tuple(name for name, kind in KINDS.items() if kind.length is not None)


def parse(body: object) -> tuple[FaultKind[Any], Any]:
    """Validate a `POST /control/faults` body → (its kind, its typed parameters, defaults filled in)."""
    if not isinstance(body, dict):
        raise FaultError('body must be a JSON object such as {"kind": "stall", "seconds": 5}')
    kind = KINDS.get(body.get("kind"))  # type: ignore[arg-type]
    if kind is None:
        raise FaultError(f"kind must be one of {', '.join(KINDS)}, not {body.get('kind')!r}")
    return kind, kind.parse(body)


@dataclass
class Fault:
    id: int
    kind: FaultKind[Any]
    params: Any
    started: float
    expires: float | None

    def remaining(self, now: float) -> float | None:
        return None if self.expires is None else max(0.0, self.expires - now)

    def describe(self, now: float) -> dict[str, Any]:
        remaining = self.remaining(now)
        return {
            "id": self.id,
            "kind": self.kind.name,
            **as_dict(self.params),
            "remaining_seconds": None if remaining is None else round(remaining, 3),
        }


class Faults:
    """Lasting faults in force. Expiry is applied by `expire()`, which the server calls periodically."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ids = itertools.count(1)
        self._active: list[Fault] = []

    def add(self, kind: FaultKind[Any], params: Any) -> Fault:
        now = self._clock()
        assert kind.length is not None, f"{kind.name} is an instant fault"
        length = getattr(params, kind.length)
        fault = Fault(next(self._ids), kind, params, now, None if length is None else now + float(length))
        self._active.append(fault)
        return fault

    def discard(self, fault: Fault) -> None:
        if fault in self._active:
            self._active.remove(fault)

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
        return [f for f in self._active if kind is None or f.kind.name == kind]

    def params(self, kind: str) -> list[Any]:
        """The parameters of every fault of `kind` in force, oldest first."""
        return [f.params for f in self._active if f.kind.name == kind]

    def latest(self, kind: str) -> Any | None:
        """The parameters of the newest fault of `kind` in force."""
        for fault in reversed(self._active):
            if fault.kind.name == kind:
                return fault.params
        return None

    def describe(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [f.describe(now) for f in self._active]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(LASTING_KINDS, 0)
        for fault in self._active:
            counts[fault.kind.name] += 1
        return counts
