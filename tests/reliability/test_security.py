"""Security checks against running processes: basic auth on every path of a real `python -m exporter` with
its debug logs captured (no password, hash or Authorization token in them, even at debug level), and the
simulator's control API, which answers loopback peers only and listens on loopback by default.

tests/stack/ covers TLS, mutual TLS and the web config's validation; this covers what an operator sees
from outside a running exporter.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from aiohttp import web

from exporter.simulator.cli import DEFAULT_LISTEN
from exporter.simulator.control import ControlApi
from exporter.simulator.server import SimulatorConfig
from tests.fixtures.exporter import start_exporter_process

pytestmark = pytest.mark.timeout(60)

USER, PASSWORD = "prometheus", "correct horse battery staple"


async def _status(session: aiohttp.ClientSession, url: str, auth: str | None) -> int:
    headers = {"Authorization": auth} if auth is not None else {}
    async with session.get(url, headers=headers) as resp:
        await resp.read()
        return resp.status


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.slow
async def test_basic_auth_guards_every_path_and_no_secret_reaches_the_logs(simulator_factory, tmp_path: Path):
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  {USER}: '{hashed}'\n")
    sim = await simulator_factory(markets=2, block_time=0.1)
    exporter = await start_exporter_process(sim, "--log.level=debug", f"--web.config.file={web_config}")
    proc = exporter.proc
    try:
        started = await exporter.wait_event("exporter_started")
        base = str(started["url"])
        right = _basic(USER, PASSWORD)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for path in ("/metrics", "/healthz", "/readyz", "/"):
                assert await _status(session, base + path, None) == 401, path
            for wrong in (
                _basic(USER, "hunter2"),
                _basic("admin", PASSWORD),
                _basic(USER, PASSWORD + " "),
                "Basic !!!not-base64!!!",
                "Bearer " + PASSWORD,
            ):
                assert await _status(session, base + "/metrics", wrong) == 401, wrong
            assert await _status(session, base + "/metrics", right) == 200
            assert await _status(session, base + "/healthz", right) == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 5) == 0
    finally:
        await exporter.close()
    logs = " ".join(str(e) for e in exporter.events)
    assert "exporter_started" in logs and "web_config" in logs.replace(".webconfig", "web_config")
    token = right.split(" ", 1)[1]
    for secret in (PASSWORD, hashed, hashed[7:29], token, "hunter2"):
        assert secret not in logs, f"a secret reached the logs: {secret[:12]}..."


async def test_control_api_refuses_a_peer_that_is_not_loopback(simulator_factory, tmp_path: Path):
    """The real guard of the control API, served on a Unix socket: the peer there has no loopback address
    (nothing leaves the machine, and no non-loopback interface is needed)."""
    sim = await simulator_factory(markets=1)
    path = tmp_path / "control.sock"
    results: dict[bool, tuple[int, int]] = {}
    for allow_remote in (False, True):
        control = ControlApi(sim, allow_remote)
        app = web.Application(middlewares=[control.guard])
        app.router.add_routes(control.routes())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.UnixSite(runner, str(path)).start()
            connector = aiohttp.UnixConnector(path=str(path))
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.get("http://sim/control/status") as resp:
                    status = resp.status
                    body = await resp.json()
                async with session.post("http://sim/control/faults", json={"kind": "gap"}) as resp:
                    fault_status = resp.status
            results[allow_remote] = (status, fault_status)
            if not allow_remote:
                assert "loopback" in body["error"]
        finally:
            await runner.cleanup()
    assert results[False] == (403, 403), "a non-loopback peer must not drive the simulator"
    assert results[True] == (200, 200), "unless remote control was allowed explicitly"


def test_simulator_listens_on_loopback_unless_told_otherwise():
    assert SimulatorConfig().host == "127.0.0.1"
    assert SimulatorConfig().allow_remote_control is False
    assert DEFAULT_LISTEN.startswith("127.0.0.1:")


@pytest.mark.slow
async def test_scanner_requests_are_refused_and_the_logs_stay_json(simulator_factory):
    """What a port scanner sends (a TLS hello on the plain port, garbage, an oversized header) gets a 400
    or a closed connection, and the exporter's stderr stays one JSON object per line: no tracebacks."""
    sim = await simulator_factory(markets=1, block_time=0.2)
    exporter = await start_exporter_process(sim)
    proc = exporter.proc
    try:
        started = await exporter.wait_event("exporter_started")
        host, port = str(started["url"]).removeprefix("http://").rsplit(":", 1)
        probes = [
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),  # TLS ClientHello start
            b"\x00\xff garbage \r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
            b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        ]
        for probe in probes:
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                writer.write(probe)
                await writer.drain()
                answer = await asyncio.wait_for(reader.read(4096), 5)
                assert answer == b"" or answer.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4")), answer[:80]
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
        async with aiohttp.ClientSession() as session, session.get(str(started["url"]) + "/healthz") as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 5) == 0
    finally:
        await exporter.close()
    raw = [e["line"] for e in exporter.events if e.get("event") == "raw"]
    assert not raw, "non-JSON lines on stderr:\n" + "".join(raw[:20])
