"""What every fault kind is made of: a typed parameter dataclass (its schema), and how it starts and ends.

A kind's parameters are a frozen dataclass whose fields declare the JSON fields of
`POST /control/faults`: the annotation is the type (`int`, `float`, `bool`, `str`, or `X | None` for an
optional field), the default makes a field optional, `param(help)` documents it for `GET /control/`, and
`__post_init__` checks ranges by raising FaultError (the control API answers 400 with the message).
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


def param(help: str, default: Any = dataclasses.MISSING) -> Any:
    """A parameter field: its help text, and its default (none: the field is required)."""
    return dataclasses.field(default=default, metadata={"help": help})


def check_seconds(kind: str, name: str, value: float | None, *, zero_ok: bool = False) -> None:
    if value is not None and not (0 < value <= MAX_SECONDS or (zero_ok and value == 0)):
        raise FaultError(f"{kind}.{name} must be > 0 and <= {MAX_SECONDS} seconds, not {value!r}")


def check_count(kind: str, count: int) -> None:
    if not 1 <= count <= 10_000:
        raise FaultError(f"{kind}.count must be between 1 and 10000, not {count!r}")


def check_http_error(kind: str, status: int) -> None:
    if not 400 <= status <= 599:
        raise FaultError(f"{kind}.status must be an HTTP error status (400-599), not {status}")


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
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class FaultKind(Generic[P]):
    """One entry of the registry.

    `length` names the parameter that bounds how long the fault lasts (None: an instant fault, which acts
    once on the connections open at the time and is not kept). `start` runs when the fault is applied
    (after a lasting one joined the faults in force; a FaultError there refuses it), `end` when a lasting
    one is cleared or runs out (after it left the faults in force), `on_snapshot` after a subscriber is
    sent a new snapshot of (channel, id) while the fault is in force.
    """

    name: str
    params: type[P]
    help: str
    length: str | None = "seconds"
    start: Callable[[FaultTarget, P], None] | None = None
    end: Callable[[FaultTarget, P], None] | None = None
    on_snapshot: Callable[[FaultTarget, P, str, str | None], None] | None = None

    @property
    def fields(self) -> tuple[Field, ...]:
        return _fields(self.params)

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
