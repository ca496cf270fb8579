"""Faults of the WebSocket connections: closes, garbage, error frames, skipped message ids (instant, on
the connections open at the time), and handshakes refused or never answered (lasting, read by the server's
WebSocket handler)."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.protocol import channels as ch
from exporter.simulator.faults.base import (
    FaultError,
    FaultKind,
    FaultTarget,
    is_duration,
    is_duration_or_zero,
    is_http_error,
    lasting,
    param,
    within,
)

CLOSE_REASONS = {
    ch.CLOSE_SERVICE_RESTARTING: ch.SERVICE_RESTARTING_REASON,
    ch.CLOSE_RATE_LIMITED: ch.RATE_LIMITED_REASON,
    ch.CLOSE_HEARTBEAT_TIMEOUT: ch.HEARTBEAT_TIMEOUT_REASON,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnect:
    """close every open connection"""

    code: int = param("WebSocket close code", ch.CLOSE_SERVICE_RESTARTING)
    abrupt: bool = param("drop the TCP connection without a close frame (the client sees 1006)", False)
    reason: str | None = param("close reason (default: the server's usual one for the code)", None)

    def __post_init__(self) -> None:
        if not (
            self.abrupt
            or self.code == 1000
            or 3000 <= self.code <= 4999
            or self.code in (1001, 1008, 1011, 1012, 1013)
        ):
            raise FaultError(
                f"disconnect.code must be 1000, 1001, 1008, 1011, 1012, 1013 or 3000-4999, not {self.code}"
            )


def _disconnect(target: FaultTarget, p: Disconnect) -> None:
    reason = p.reason if p.reason is not None else CLOSE_REASONS.get(p.code, "")
    for session in target.open_sessions():
        if p.abrupt:
            session.abort()
        else:
            session.close_soon(p.code, reason, flush=False)


DISCONNECT = FaultKind("disconnect", Disconnect, start=_disconnect)


@dataclass(frozen=True, slots=True, kw_only=True)
class Count:
    count: int = param("how many", 1, check=within(1, 10_000))


@dataclass(frozen=True, slots=True, kw_only=True)
class Malformed(Count):
    """send frames that are not JSON on every connection"""


def _malformed(target: FaultTarget, p: Malformed) -> None:
    for session in target.open_sessions():
        session.send_garbage(p.count)


MALFORMED = FaultKind("malformed", Malformed, start=_malformed)


@dataclass(frozen=True, slots=True, kw_only=True)
class Gap(Count):
    """skip message ids on every connection"""


def _gap(target: FaultTarget, p: Gap) -> None:
    sessions = target.open_sessions()
    for session in sessions:
        session.skip_ids(p.count)
    target.stats.message_ids_skipped += p.count * len(sessions)


GAP = FaultKind("gap", Gap, start=_gap)


@dataclass(frozen=True, slots=True, kw_only=True)
class Error:
    """send an error frame on every connection"""

    text: str = param("the error frame's message", ch.ERR_INTERNAL)


def _error(target: FaultTarget, p: Error) -> None:
    for session in target.open_sessions():
        session.send_error(p.text)


ERROR = FaultKind("error", Error, start=_error)


@dataclass(frozen=True, slots=True, kw_only=True)
class Silent:
    """accept new connections but never send or answer anything on them"""

    # No start or end: the server's WebSocket handler reads it (a connection opened while in force is silent).
    seconds: float | None = lasting()


SILENT = FaultKind("silent", Silent)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    """refuse WebSocket handshakes with an HTTP error"""

    # No start or end: the server's WebSocket handler reads it and refuses upgrades while in force.
    seconds: float | None = lasting()
    status: int = param("HTTP status of the refused handshake", 429, check=is_http_error)
    retry_after: float | None = param(
        "Retry-After header, seconds (default: none)", None, check=is_duration_or_zero
    )


REJECT = FaultKind("reject", Reject)


@dataclass(frozen=True, slots=True, kw_only=True)
class Penalty:
    """drop every open connection for subscription-limit abuse (error, close 4008) and refuse upgrades from
    its address with 429 for `seconds` (DELETE /control/faults lifts it)"""

    seconds: int = param(
        "the 4008's retryAfterSeconds, and how long the address's upgrades are refused with 429",
        ch.RECONNECT_PENALTY_S,
        check=is_duration,
    )


def _penalty(target: FaultTarget, p: Penalty) -> None:
    # As if each connection kept hitting the orderbook cap (the rule itself: --ws.subscription-limit-abuse).
    for session in target.open_sessions():
        session.drop_for_abuse(ch.ORDERBOOK, ch.SUBSCRIPTION_CAPS[ch.ORDERBOOK], p.seconds)


PENALTY = FaultKind("penalty", Penalty, start=_penalty)
