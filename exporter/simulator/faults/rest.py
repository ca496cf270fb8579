"""Faults of the REST API (comlink): errors and slowness, read by the server's REST middleware and by the
snapshot fetch of every subscribe."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.simulator.faults.base import FaultKind, check_http_error, check_seconds, param


@dataclass(frozen=True, slots=True, kw_only=True)
class RestError:
    seconds: float | None = param("how long it lasts (default: until cleared)", None)
    status: int = param("HTTP status of every REST answer", 500)
    snapshots: bool = param("fail the snapshot fetch of WebSocket subscribes too", True)

    def __post_init__(self) -> None:
        check_seconds("rest_error", "seconds", self.seconds)
        check_http_error("rest_error", self.status)


@dataclass(frozen=True, slots=True, kw_only=True)
class RestSlow:
    seconds: float | None = param("how long it lasts (default: until cleared)", None)
    delay: float = param("seconds added to every REST answer and snapshot fetch")

    def __post_init__(self) -> None:
        check_seconds("rest_slow", "seconds", self.seconds)
        check_seconds("rest_slow", "delay", self.delay)


REST_ERROR = FaultKind("rest_error", RestError, "REST answers an HTTP error")
REST_SLOW = FaultKind("rest_slow", RestSlow, "REST answers late")
