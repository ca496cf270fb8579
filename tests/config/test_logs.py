"""Logging obeys --log.level/--log.format even for loggers created at import time."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from exporter import logs
from exporter.feed import connection  # creates its module-level logger at import, before configure()


@pytest.fixture(autouse=True)
def restore_structlog() -> Iterator[None]:
    """configure() is process-wide: put back what was there so no later test logs into a closed capsys."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_module_loggers_created_before_configure_follow_it(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "json")
    connection.log.info("ws_connected", link="conn-0")
    connection.log.debug("too_verbose")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    event = json.loads(lines[0])
    assert event["event"] == "ws_connected"
    assert event["module"] == "exporter.feed.connection"
    assert event["link"] == "conn-0" and event["level"] == "info"


def test_bad_level_and_format_are_refused() -> None:
    with pytest.raises(ValueError, match="log level"):
        logs.configure("loud", "json")
    with pytest.raises(ValueError, match="log format"):
        logs.configure("info", "xml")  # type: ignore[arg-type]
