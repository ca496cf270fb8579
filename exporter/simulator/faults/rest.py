"""Faults of the REST API (comlink): errors and slowness, read by the server's REST middleware and by the
snapshot fetch of every subscribe."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.simulator.faults.base import FaultKind, is_duration, is_http_error, lasting, param


@dataclass(frozen=True, slots=True, kw_only=True)
class RestError:
    """REST answers an HTTP error"""

    seconds: float | None = lasting()
    status: int = param("HTTP status of every REST answer", 500, check=is_http_error)
    snapshots: bool = param("fail the snapshot fetch of WebSocket subscribes too", True)


REST_ERROR = FaultKind("rest_error", RestError)


@dataclass(frozen=True, slots=True, kw_only=True)
class RestSlow:
    """REST answers late"""

    seconds: float | None = lasting()
    delay: float = param("seconds added to every REST answer and snapshot fetch", check=is_duration)


REST_SLOW = FaultKind("rest_slow", RestSlow)
