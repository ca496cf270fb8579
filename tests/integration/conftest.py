"""Helpers for running the exporter against the simulator over real sockets."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.helpers import Samples, scrape, wait_for


async def control(sim: Any, method: str, path: str, body: object | None = None) -> Any:
    """Call the simulator's control API; fails the test on a non-2xx answer."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, sim.base_url + path, json=body, timeout=aiohttp.ClientTimeout(total=10)
        ) as resp,
    ):
        text = await resp.text()
        assert resp.status < 300, f"{method} {path} {body}: {resp.status} {text}"
        return await resp.json() if text else None


async def fault(sim: Any, kind: str, **params: Any) -> Any:
    return await control(sim, "POST", "/control/faults", {"kind": kind, **params})


async def readyz(exporter: Any) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(exporter.url + "/readyz", timeout=aiohttp.ClientTimeout(total=5)) as resp,
    ):
        return resp.status, await resp.text()


async def wait_ready(exporter: Any, timeout: float = 15.0) -> None:
    async def ok() -> Any:
        status, _ = await readyz(exporter)
        return status == 200

    try:
        await wait_for(ok, timeout=timeout, interval=0.05, message="exporter /readyz 200")
    except AssertionError:
        status, body = await readyz(exporter)
        raise AssertionError(f"/readyz stayed {status}: {body}") from None


async def wait_not_ready(exporter: Any, timeout: float = 10.0) -> str:
    async def down() -> Any:
        status, body = await readyz(exporter)
        return body or "not ready" if status != 200 else None

    result: str = await wait_for(down, timeout=timeout, interval=0.02, message="exporter /readyz not 200")
    return result


async def metrics(exporter: Any) -> Samples:
    return await scrape(exporter.metrics_url)


async def truth(sim: Any) -> Samples:
    return await scrape(sim.base_url + "/metrics")


@pytest.fixture
def sim_config() -> dict[str, Any]:
    """Small and fast: the default for these tests."""
    return {"host": "127.0.0.1", "port": 0, "seed": 1, "markets": 3, "block_time": 0.1}


# Bridge until tests/fixtures/simulator.py provides the shared `simulator_factory`: the same contract
# (call with SimulatorConfig fields, everything stopped at teardown).
import tests.fixtures.simulator as _shared_simulator_fixtures  # noqa: E402

if not hasattr(_shared_simulator_fixtures, "simulator_factory"):
    from collections.abc import AsyncIterator

    from exporter.simulator.server import Simulator, SimulatorConfig

    @pytest.fixture
    async def simulator_factory() -> AsyncIterator[Any]:
        started: list[Simulator] = []

        async def make(**overrides: Any) -> Simulator:
            config = {"host": "127.0.0.1", "port": 0, "seed": 1, "markets": 3, "block_time": 0.1} | overrides
            sim = Simulator(SimulatorConfig(**config))
            started.append(sim)
            await sim.start()
            return sim

        try:
            yield make
        finally:
            for sim in reversed(started):
                await sim.stop()
