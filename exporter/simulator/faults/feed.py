"""Faults of what the feed carries: frames held back (stall), exchange time behind the wall clock (lag,
read by the server's market clock), and a crossed order book (cross)."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.protocol import channels as ch
from exporter.simulator.faults.base import FaultError, FaultKind, FaultTarget, is_duration, lasting, param


@dataclass(frozen=True, slots=True, kw_only=True)
class Stall:
    """hold back frames (all, or one channel's data)"""

    seconds: float | None = lasting()
    channel: str | None = param("hold back only this channel's data (default: everything, pings too)", None)

    def __post_init__(self) -> None:
        if self.channel is not None and self.channel not in ch.ALL_CHANNELS:
            raise FaultError(
                f"stall.channel must be one of {', '.join(ch.ALL_CHANNELS)}, not {self.channel!r}"
            )


def _restall(target: FaultTarget, _: Stall) -> None:
    """The hub holds back the union of every stall in force."""
    stalls: list[Stall] = target.active_params(STALL.name)
    everything = any(s.channel is None for s in stalls)
    target.hub.set_stall(everything, frozenset(s.channel for s in stalls if s.channel))


STALL = FaultKind("stall", Stall, start=_restall, end=_restall)


@dataclass(frozen=True, slots=True, kw_only=True)
class Lag:
    """exchange timestamps trail the wall clock"""

    # No start or end: the server reads it (`lag_seconds`), its exchange time trails by the newest in force.
    seconds: float = param("how far exchange timestamps trail the wall clock", check=is_duration)
    duration: float | None = lasting()


LAG = FaultKind("lag", Lag)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cross:
    """cross a market's order book in the stream (REST and snapshots stay uncrossed)"""

    market: str = param("the market whose order book crosses")
    seconds: float | None = lasting()
    recross: bool = param(
        "keep the book crossed while in force: again right after every new snapshot a client receives "
        "(so a resync does not cure it), and again whenever trades eat the asks it crossed",
        False,
    )


def _start_cross(target: FaultTarget, p: Cross) -> None:
    if p.market not in target.source.tickers():
        raise FaultError(f"cross.market {p.market!r} is not a listed market")
    target.source.start_cross(p.market, keep=p.recross)


def _end_cross(target: FaultTarget, p: Cross) -> None:
    crossing: list[Cross] = target.active_params(CROSS.name)
    if all(c.market != p.market for c in crossing):
        target.source.end_cross(p.market)


def _recross(target: FaultTarget, p: Cross, channel: str, key: str | None) -> None:
    if p.recross and channel == ch.ORDERBOOK and key == p.market:
        target.source.recross(p.market)


CROSS = FaultKind("cross", Cross, start=_start_cross, end=_end_cross, on_snapshot=_recross)
