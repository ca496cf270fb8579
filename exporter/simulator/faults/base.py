"""What every fault kind is made of: a typed parameter dataclass (its schema), and how it starts and ends.

A kind's parameters are a frozen dataclass whose fields declare the JSON fields of
`POST /control/faults`: the annotation is the type (`int`, `float`, `bool`, `str`, or `X | None` for an
optional field), the default makes a field optional, and `param(help, default, check=...)` documents it
for `GET /control/` and says how its value is checked (`is_duration`, `is_http_error`, `within(lo, hi)`).
`lasting()` declares the duration that bounds how long a lasting kind stays in force (a kind without one
is instant). `FaultKind.parse` runs the checks, naming the kind; what involves more than one field, the
dataclass's `__post_init__` checks. Either raises FaultError, which the control API answers with 400. The
dataclass's docstring is the kind's help.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from exporter.simulator.chain import Chain
    from exporter.simulator.hub import Hub
    from exporter.simulator.session import Session
    from exporter.simulator.source import EventSource
    from exporter.simulator.truth import Stats

#: The upper bound of every duration parameter.
MAX_SECONDS: Final = 86400


class FaultError(ValueError):
    """A control request that cannot be applied; the message says what is wrong."""


#: How a field's value is checked: (kind, field name, value) → None, or FaultError saying what is wrong.
Check = Callable[[str, str, Any], None]
#: The help of a lasting kind's length field, as most kinds word it.
UNTIL_CLEARED: Final = "how long it lasts (default: until cleared)"


def param(help: str, default: Any = dataclasses.MISSING, *, check: Check | None = None) -> Any:
    """A parameter field: its help text, its default (none: the field is required), and the check of a
    value given for it."""
    return dataclasses.field(default=default, metadata={"help": help, "check": check})


def lasting(help: str = UNTIL_CLEARED) -> Any:
    """The duration field that bounds how long a lasting kind stays in force (null: until cleared)."""
    return dataclasses.field(default=None, metadata={"help": help, "check": is_duration, "length": True})


def is_duration(kind: str, name: str, value: float, *, zero_ok: bool = False) -> None:
    """More than 0 (or exactly 0 where `zero_ok`) and at most MAX_SECONDS."""
    if not (0 < value <= MAX_SECONDS or (zero_ok and value == 0)):
        raise FaultError(f"{kind}.{name} must be > 0 and <= {MAX_SECONDS} seconds, not {value!r}")


def is_duration_or_zero(kind: str, name: str, value: float) -> None:
    is_duration(kind, name, value, zero_ok=True)


def is_http_error(kind: str, name: str, value: int) -> None:
    if not 400 <= value <= 599:
        raise FaultError(f"{kind}.{name} must be an HTTP error status (400-599), not {value}")


def within(low: int, high: int) -> Check:
    """Between `low` and `high`, both included."""

    def check(kind: str, name: str, value: int) -> None:
        if not low <= value <= high:
            raise FaultError(f"{kind}.{name} must be between {low} and {high}, not {value!r}")

    return check


class FaultTarget(Protocol):
    """What a fault acts on: the simulator, seen through what faults need of it."""

    @property
    def source(self) -> EventSource: ...

    @property
    def hub(self) -> Hub: ...

    @property
    def stats(self) -> Stats: ...

    @property
    def chain(self) -> Chain:
        """The chain the source makes blocks for, and the indexer following it (chain faults)."""

    def open_sessions(self) -> list[Session]:
        """The connections that are not closing."""

    def active_params(self, kind: str) -> list[Any]:
        """The parameters of the faults of `kind` in force (the one ending is no longer among them)."""


P = TypeVar("P")

_JSON_TYPES: Final[dict[type, tuple[str, tuple[type, ...]]]] = {
    bool: ("boolean", (bool,)),
    int: ("integer", (int,)),
    float: ("number", (int, float)),
    str: ("string", (str,)),
}


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    json_type: str
    accepts: tuple[type, ...]
    nullable: bool
    required: bool
    default: Any
    help: str
    #: Its value's own check (run on a value given, not on the default).
    check: Check | None
    #: Whether it bounds how long the fault lasts.
    length: bool

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.json_type + (" or null" if self.nullable else "")}
        if self.required:
            out["required"] = True
        else:
            out["default"] = self.default
        out["help"] = self.help
        return out


def _fields(params: type) -> tuple[Field, ...]:
    hints = typing.get_type_hints(params)
    out = []
    for f in dataclasses.fields(params):
        hint = hints[f.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        base = next(a for a in args if a is not type(None))
        json_type, accepts = _JSON_TYPES[base]
        required = f.default is dataclasses.MISSING
        out.append(
            Field(
                f.name,
                json_type,
                accepts,
                type(None) in args,
                required,
                None if required else f.default,
                str(f.metadata.get("help", "")),
                f.metadata.get("check"),
                bool(f.metadata.get("length")),
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class FaultKind(Generic[P]):
    """One entry of the registry: its name, its parameters (whose docstring is the kind's help), and how it
    acts. `start` runs when the fault is applied (after a lasting one joined the faults in force; a
    FaultError there refuses it), `end` when a lasting one is cleared or runs out (after it left the faults
    in force), `on_snapshot` after a subscriber is sent a new snapshot of (channel, id) while the fault is
    in force.
    """

    name: str
    params: type[P]
    start: Callable[[FaultTarget, P], None] | None = None
    end: Callable[[FaultTarget, P], None] | None = None
    on_snapshot: Callable[[FaultTarget, P, str, str | None], None] | None = None

    def __post_init__(self) -> None:
        doc = self.params.__doc__
        # Without one, @dataclass makes the docstring its signature ("Stall(*, seconds: ...)").
        if not doc or doc.startswith(f"{self.params.__name__}("):
            raise TypeError(f"fault kind {self.name}: {self.params.__name__} needs a docstring (its help)")
        lengths = [f.name for f in self.fields if f.length]
        if len(lengths) > 1:  # one duration bounds how long a fault lasts; which would be ambiguous
            raise TypeError(f"fault kind {self.name}: more than one lasting() field: {', '.join(lengths)}")

    @property
    def help(self) -> str:
        """What the fault does, as GET /control/ lists it: the parameters' docstring on one line."""
        return " ".join((self.params.__doc__ or "").split())

    @property
    def fields(self) -> tuple[Field, ...]:
        return _fields(self.params)

    @property
    def length(self) -> str | None:
        """The parameter that bounds how long the fault lasts (its `lasting()` field), or None: an instant
        fault, which acts once on the connections open at the time and is not kept."""
        return next((f.name for f in self.fields if f.length), None)

    def parse(self, body: dict[str, Any]) -> P:
        """The typed parameters of a request body (its "kind" already matched); FaultError names what is
        wrong."""
        fields = self.fields
        allowed = [f.name for f in fields]
        unknown = sorted(set(body) - set(allowed) - {"kind"})
        if unknown:
            raise FaultError(
                f"unknown field(s) for {self.name}: {', '.join(unknown)}; allowed: {', '.join(allowed)}"
            )
        values: dict[str, Any] = {}
        for f in fields:
            value = body.get(f.name)
            if value is None:
                if f.required:
                    raise FaultError(f"{self.name} needs {f.name!r}")
                continue
            if not isinstance(value, f.accepts) or (bool not in f.accepts and isinstance(value, bool)):
                expected = " or ".join(t.__name__ for t in f.accepts)
                raise FaultError(f"{self.name}.{f.name} must be {expected}, not {value!r}")
            values[f.name] = float(typing.cast(float, value)) if f.json_type == "number" else value
        for f in fields:
            if f.check is not None and values.get(f.name) is not None:
                f.check(self.name, f.name, values[f.name])
        return self.params(**values)

    def describe(self) -> dict[str, Any]:
        """The kind as `GET /control/` lists it."""
        return {
            "kind": self.name,
            "help": self.help,
            "lasting": self.length is not None,
            "params": {f.name: f.describe() for f in self.fields},
        }


def as_dict(params: object) -> dict[str, Any]:
    """A kind's parameters as the JSON fields they came from."""
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}  # type: ignore[arg-type]
