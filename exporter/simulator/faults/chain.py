"""Faults that tell the chain, the indexer, REST and one connection apart (exporter.simulator.chain):
chain_halt, indexer_lag, rest_lag, link_lag, rpc_down, rpc_catching_up."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.simulator.faults.base import (
    FaultError,
    FaultKind,
    FaultTarget,
    is_duration,
    is_http_error,
    lasting,
    param,
    within,
)

#: The longest a lag may hold frames back: everything held is kept in memory (at the default rate about
#: 400 frames a second for indexer_lag), and a quarter of an hour outlasts every alert window of the rules.
MAX_LAG_SECONDS = 900.0


def _check_lag(kind: str, seconds: float) -> None:
    if seconds > MAX_LAG_SECONDS:
        raise FaultError(f"{kind} holds frames in memory: at most {MAX_LAG_SECONDS:g} s, not {seconds:g}")


def _is_lag(kind: str, name: str, value: float) -> None:
    """A lag's seconds: a duration, and no more than MAX_LAG_SECONDS."""
    is_duration(kind, name, value)
    _check_lag(kind, value)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainHalt:
    """the chain stops making blocks, and the indexer (WebSocket, REST) with it"""

    seconds: float | None = lasting("how long the chain makes no block (default: until cleared)")


def _halt(target: FaultTarget, _: ChainHalt) -> None:
    target.chain.start_halt()


def _unhalt(target: FaultTarget, _: ChainHalt) -> None:
    if not target.active_params(CHAIN_HALT.name):
        target.chain.end_halt()


CHAIN_HALT = FaultKind("chain_halt", ChainHalt, start=_halt, end=_unhalt)


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexerLag:
    """the chain moves on while the indexer's WebSocket and REST fall behind it"""

    blocks: int | None = param(
        "how many blocks the indexer (WebSocket and REST) trails the chain", None, check=within(1, 100_000)
    )
    seconds: float | None = param("the same lag in seconds (give blocks or seconds)", None, check=_is_lag)
    growing: bool = param("the lag grows from 0 by half a second per second up to blocks/seconds", False)
    duration: float | None = lasting()

    def __post_init__(self) -> None:
        if (self.blocks is None) == (self.seconds is None):
            raise FaultError("indexer_lag needs exactly one of 'blocks' and 'seconds'")


def _start_indexer_lag(target: FaultTarget, p: IndexerLag) -> None:
    chain = target.chain
    seconds = p.seconds if p.seconds is not None else (p.blocks or 0) * chain.block_time
    _check_lag("indexer_lag", seconds)
    chain.start_indexer_lag(seconds, p.growing)


def _end_indexer_lag(target: FaultTarget, _: IndexerLag) -> None:
    remaining: list[IndexerLag] = target.active_params(INDEXER_LAG.name)
    if remaining:
        _start_indexer_lag(target, remaining[-1])
    else:
        target.chain.end_indexer_lag()


INDEXER_LAG = FaultKind("indexer_lag", IndexerLag, start=_start_indexer_lag, end=_end_indexer_lag)


@dataclass(frozen=True, slots=True, kw_only=True)
class RestLag:
    """REST's /v4/height trails the WebSocket's head"""

    blocks: int = param("how many blocks REST's /v4/height trails the WebSocket", check=within(1, 10_000))
    seconds: float | None = lasting()


def _rest_lag(target: FaultTarget, _: RestLag) -> None:
    lags: list[RestLag] = target.active_params(REST_LAG.name)
    target.chain.rest_lag_blocks = max((p.blocks for p in lags), default=0)


REST_LAG = FaultKind("rest_lag", RestLag, start=_rest_lag, end=_rest_lag)


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkLag:
    """one connection's data frames arrive late while the others stay fresh"""

    seconds: float = param("how late the connection's data frames arrive", check=_is_lag)
    connection: str = param("a connection_id, or the index of a connection in order of arrival", "0")
    duration: float | None = lasting()


def _start_link_lag(target: FaultTarget, p: LinkLag) -> None:
    try:
        target.chain.start_link_lag(target.open_sessions(), p.connection, p.seconds)
    except ValueError as exc:
        raise FaultError(str(exc)) from None


def _end_link_lag(target: FaultTarget, p: LinkLag) -> None:
    chain = target.chain
    for connection_id in list(chain.links):
        if p.connection in (connection_id, chain.link_index.get(connection_id)):
            chain.end_link_lag(connection_id)


LINK_LAG = FaultKind("link_lag", LinkLag, start=_start_link_lag, end=_end_link_lag)


@dataclass(frozen=True, slots=True, kw_only=True)
class RpcDown:
    """the chain's RPC node does not answer"""

    seconds: float | None = lasting()
    status: int | None = param(
        "answer this HTTP status (default: drop the connection unanswered)", None, check=is_http_error
    )


def _rpc_down(target: FaultTarget, _: RpcDown) -> None:
    downs: list[RpcDown] = target.active_params(RPC_DOWN.name)
    target.chain.rpc_down = bool(downs)
    target.chain.rpc_status = downs[-1].status if downs else None


RPC_DOWN = FaultKind("rpc_down", RpcDown, start=_rpc_down, end=_rpc_down)


@dataclass(frozen=True, slots=True, kw_only=True)
class RpcCatchingUp:
    """the chain's RPC node is catching up: its head stops and /status says catching_up"""

    seconds: float | None = lasting()


def _start_catching_up(target: FaultTarget, _: RpcCatchingUp) -> None:
    if target.chain.catching_up_at is None:
        target.chain.start_catching_up()


def _end_catching_up(target: FaultTarget, _: RpcCatchingUp) -> None:
    if not target.active_params(RPC_CATCHING_UP.name):
        target.chain.catching_up_at = None


RPC_CATCHING_UP = FaultKind("rpc_catching_up", RpcCatchingUp, start=_start_catching_up, end=_end_catching_up)
KINDS = (CHAIN_HALT, INDEXER_LAG, REST_LAG, LINK_LAG, RPC_DOWN, RPC_CATCHING_UP)
