"""Faults of data that looks healthy but is wrong (issue 15): a ghost level the server never removes, an
oracle that stops (`oracle_freeze`) or drifts off the market (`oracle_skew`) while trading goes on, a candle
that skips periods (`candle_gap`).

`ghost_level` publishes one order book level in the stream that the indexer's own book (REST, snapshots)
does not have, where it does not cross: the "abnormally deep orderbook" of v4-chain PR #2855 (reference
§8). By default it sits half a tick off the price grid a few levels deep, so no real update ever lands on
it; it is sent again after every new snapshot a client receives while in force (the server "never removes
it"), and removed from the stream when the fault is cleared. GET /control/truth lists the ghosts in force.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from exporter.protocol import channels as ch
from exporter.simulator import formats
from exporter.simulator.faults.base import FaultError, FaultKind, FaultTarget, lasting, param, within
from exporter.simulator.shapes import candle_contents

SIDES = ("bid", "ask")
#: How many price spacings behind the top a default ghost sits: inside any snapshot's 100 levels (levels
#: are at least one spacing apart), and far enough that the book's drift during a drill does not cross it.
GHOST_DEPTH_SPACINGS = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class GhostLevel:
    """an order book level in the stream that the indexer's book (REST, snapshots) does not have and never
    removes, placed where it does not cross"""

    market: str = param("the market whose streamed book gets the ghost level")
    side: str = param("bid or ask", "bid")
    price: str | None = param(
        "its price, a decimal string that must not cross the book (default: half a tick off the grid, "
        f"{GHOST_DEPTH_SPACINGS} price spacings behind the top)",
        None,
    )
    seconds: float | None = lasting()

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise FaultError(f"ghost_level.side must be bid or ask, not {self.side!r}")
        if self.price is not None:
            try:
                ok = Decimal(self.price) > 0
            except InvalidOperation:
                ok = False
            if not ok:
                raise FaultError(f"ghost_level.price must be a positive decimal string, not {self.price!r}")


def ghost_price(target: FaultTarget, p: GhostLevel) -> str:
    """The ghost's price text: the one asked for (checked not to cross), else the default."""
    market: Any = getattr(target.source, "markets", {}).get(p.market)
    if market is None:
        raise FaultError(f"ghost_level.market {p.market!r} is not a listed market of the synthetic source")
    bid = p.side == "bid"
    top = market.best_bid if bid else market.best_ask
    other = market.best_ask if bid else market.best_bid
    if p.price is None:
        if top is None:
            raise FaultError(f"ghost_level: {p.market} has no {p.side}s to sit behind")
        spacing = max(1, market.mid_ticks() // 20000)
        ticks = top - GHOST_DEPTH_SPACINGS * spacing if bid else top + GHOST_DEPTH_SPACINGS * spacing
        # Half a tick off the grid: ticks * 10 ± 5 at one more decimal.
        return formats.fixed(ticks * 10 + (-5 if bid else 5), market.price_decimals + 1)
    if other is not None:
        limit = Decimal(market.fmt_price(other))
        if (bid and Decimal(p.price) >= limit) or (not bid and Decimal(p.price) <= limit):
            raise FaultError(f"ghost_level.price {p.price} would cross the book (best opposite {limit})")
    return p.price


def _start(target: FaultTarget, p: GhostLevel) -> None:
    price = ghost_price(target, p)
    # The default is resolved once, at start, and kept in the parameters (GET /control/faults and the
    # truth then show where the ghost is); the book moves on, the ghost must not.
    object.__setattr__(p, "price", price)
    _publish(target, p, "7")


def _end(target: FaultTarget, p: GhostLevel) -> None:
    if p.market in target.source.tickers():
        _publish(target, p, "0")


def _resend(target: FaultTarget, p: GhostLevel, channel: str, key: str | None) -> None:
    if channel == ch.ORDERBOOK and key == p.market:
        _publish(target, p, "7")


def _publish(target: FaultTarget, p: GhostLevel, size: str) -> None:
    side = "bids" if p.side == "bid" else "asks"
    target.hub.publish(ch.ORDERBOOK, p.market, {side: [[p.price, size]]})


def ghosts(target: FaultTarget) -> dict[str, list[dict[str, str]]]:
    """The ghost levels in force, by market: what GET /control/truth reports."""
    out: dict[str, list[dict[str, str]]] = {}
    for p in target.active_params(GHOST_LEVEL.name):
        out.setdefault(p.market, []).append({"side": p.side, "price": p.price})
    return out


GHOST_LEVEL = FaultKind("ghost_level", GhostLevel, start=_start, end=_end, on_snapshot=_resend)


@dataclass(frozen=True, slots=True, kw_only=True)
class OracleFreeze:
    """a market's oracle price stops updating while its book and trades go on"""

    market: str = param("the market whose oracle price stops (its book and trades go on)")
    seconds: float | None = lasting()


@dataclass(frozen=True, slots=True, kw_only=True)
class OracleSkew:
    """a market's oracle price is published skewed by a ratio from the market's own price"""

    market: str = param("the market whose oracle price is skewed")
    ratio: float = param("oracle = price x (1 + ratio), e.g. 0.1 for 10% above the market")
    seconds: float | None = lasting()

    def __post_init__(self) -> None:
        if not -0.9 <= self.ratio <= 10.0 or self.ratio == 0:
            raise FaultError(f"oracle_skew.ratio must be non-zero, within [-0.9, 10], not {self.ratio}")


def _start_oracle(target: FaultTarget, p: OracleFreeze | OracleSkew) -> None:
    if not hasattr(target.source, "oracle_faults") or p.market not in target.source.tickers():
        raise FaultError(f"{p.market!r} is not a listed market of the synthetic source")
    _oracle_faults(target, p)


def _oracle_faults(target: FaultTarget, _: object) -> None:
    """The source's oracle faults become those in force (a freeze wins over a skew)."""
    faults = getattr(target.source, "oracle_faults", None)
    if faults is None:
        return
    faults.clear()
    for skew in target.active_params(ORACLE_SKEW.name):
        faults[skew.market] = skew.ratio
    for freeze in target.active_params(ORACLE_FREEZE.name):
        faults[freeze.market] = None


ORACLE_FREEZE = FaultKind("oracle_freeze", OracleFreeze, start=_start_oracle, end=_oracle_faults)
ORACLE_SKEW = FaultKind("oracle_skew", OracleSkew, start=_start_oracle, end=_oracle_faults)


@dataclass(frozen=True, slots=True, kw_only=True)
class CandleGap:
    """a market's candle skips periods: its startedAt jumps ahead by `periods`"""

    market: str = param("the market whose open candle jumps ahead")
    resolution: str = param("the candle resolution, e.g. 1MIN")
    periods: int = param("how many periods its startedAt skips", 1, check=within(1, 1000))

    def __post_init__(self) -> None:
        if self.resolution not in ch.CANDLE_RESOLUTION_SECONDS:
            raise FaultError(
                f"candle_gap.resolution must be one of {', '.join(ch.CANDLE_RESOLUTION_SECONDS)}, "
                f"not {self.resolution!r}"
            )


def _candle_gap(target: FaultTarget, p: CandleGap) -> None:
    """The market's open candle of that resolution restarts `periods` + 1 periods later and is published:
    its subscribers see startedAt skip `periods` periods. At the next boundary the candles follow the clock
    again (a new candle older than the newest seen, which a consumer ignores)."""
    market: Any = getattr(target.source, "markets", {}).get(p.market)
    candle = None if market is None else market.candles.get(p.resolution)
    if candle is None:
        raise FaultError(f"candle_gap.market {p.market!r} has no open {p.resolution} candle (synthetic only)")
    # From S to S + periods + 1: the periods in between have no candle.
    candle.started_at += (p.periods + 1) * ch.CANDLE_RESOLUTION_SECONDS[p.resolution]
    contents = candle_contents(market, p.resolution, candle)
    target.hub.publish(ch.CANDLES, ch.candle_id(p.market, p.resolution), contents)


CANDLE_GAP = FaultKind("candle_gap", CandleGap, start=_candle_gap)


#: What `schema_change` does to a snapshot: `add` a field a consumer does not know, or `rename` its first
#: field (the one a consumer reads), as a venue release might.
SCHEMA_MODES = ("add", "rename")
ADDED_FIELD = "schemaProbe"


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaChange:
    """a channel's snapshots gain a field (add) or rename their first one (rename), from the next snapshot"""

    channel: str = param("the channel whose snapshots change")
    mode: str = param("add (a new field) or rename (its first field gets a new name)", "add")
    seconds: float | None = lasting()

    def __post_init__(self) -> None:
        if self.channel not in ch.ALL_CHANNELS:
            raise FaultError(f"schema_change.channel must be one of {', '.join(ch.ALL_CHANNELS)}")
        if self.mode not in SCHEMA_MODES:
            raise FaultError(f"schema_change.mode must be add or rename, not {self.mode!r}")


def _schema_changes(target: FaultTarget, _: object) -> None:
    """Start or end: the hub's schema changes become those in force (the newest per channel wins)."""
    target.hub.schema_changes = {p.channel: p.mode for p in target.active_params(SCHEMA_CHANGE.name)}


def changed_schema(mode: str | None, contents: Any) -> Any:
    """A snapshot's contents as the fault changes them (a copy; the ground truth keeps the original)."""
    if mode is None or not isinstance(contents, dict):
        return contents
    if mode == "add":
        return {**contents, ADDED_FIELD: "1"}
    first = next(iter(contents), None)
    return {(k + "V2" if k == first else k): v for k, v in contents.items()}


SCHEMA_CHANGE = FaultKind("schema_change", SchemaChange, start=_schema_changes, end=_schema_changes)
KINDS = (GHOST_LEVEL, ORACLE_FREEZE, ORACLE_SKEW, CANDLE_GAP, SCHEMA_CHANGE)
