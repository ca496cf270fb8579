"""Fixtures of the simulator suite: recording WebSocket clients closed at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from exporter.simulator.server import Simulator
from tests.simulator.probe import Probe

ProbeFactory = Callable[..., Awaitable[Probe]]


@pytest.fixture
async def probes() -> AsyncIterator[ProbeFactory]:
    opened: list[Probe] = []

    async def open_probe(sim: Simulator, answer_pings: bool = True, skip_connected: bool = True) -> Probe:
        probe = await Probe.open(sim.ws_url, answer_pings=answer_pings)
        opened.append(probe)
        if skip_connected:
            await probe.next_type("connected")
        return probe

    try:
        yield open_probe
    finally:
        for probe in opened:
            await probe.close()
