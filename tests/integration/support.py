"""Helpers for running the exporter against the simulator over real sockets (fixtures: tests/fixtures/)."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.fixtures.simulator import control
from tests.groundtruth.support import published
from tests.helpers import Samples, scrape, wait_for


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


#: The simulator's /metrics (what it published, accepted, rejected and received); one definition, in
#: tests.groundtruth.support, next to its /control/truth.
truth = published
