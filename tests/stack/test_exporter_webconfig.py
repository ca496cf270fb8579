"""The real `dydx-exporter --web.config.file`: HTTPS and basic auth on /metrics, a bad file refused at start,
and no secret in its logs. The indexer is unreachable on purpose: the web side must not depend on it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import free_port, kill_if_running, parse_metrics, wait_for
from tests.stack.certs import CertificateAuthority
from tests.stack.test_webconfig import PASSWORD, basic, bcrypt_hash, client_context, get, write_config

REPO = Path(__file__).resolve().parents[2]


def exporter_argv(port: int, web_config: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "exporter",
        "--web.listen-address",
        f"127.0.0.1:{port}",
        "--web.config.file",
        str(web_config),
        "--dydx.ws-url",
        "ws://127.0.0.1:9/v4/ws",
        "--dydx.rest-url",
        "http://127.0.0.1:9",
        "--log.format",
        "json",
    ]


@pytest.mark.timeout(60)
async def test_exporter_serves_metrics_over_https_to_the_right_password_only(tmp_path):
    ca = CertificateAuthority.create(tmp_path, "ca")
    server = ca.issue(tmp_path, "exporter", server=True, sans=("127.0.0.1",))
    hashed = bcrypt_hash(PASSWORD, cost=6)
    web_config = write_config(
        tmp_path,
        {
            "tls_server_config": {"cert_file": str(server.cert_file), "key_file": str(server.key_file)},
            "basic_auth_users": {"prometheus": hashed},
        },
    )
    port = free_port()
    log_path = tmp_path / "exporter.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *exporter_argv(port, web_config), cwd=REPO, stdout=log, stderr=log, start_new_session=True
        )
    base = f"https://127.0.0.1:{port}"
    context = client_context(ca)
    try:

        async def serving():
            with contextlib.suppress(aiohttp.ClientError):
                return (await get(base + "/healthz", context))[0] in (200, 401)
            assert proc.returncode is None, log_path.read_text()
            return False

        await wait_for(serving, timeout=20, message="exporter answers over HTTPS")
        status, headers, _ = await get(base + "/metrics", context)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert (await get(base + "/metrics", context, basic("prometheus", "hunter2")))[0] == 401
        status, _, body = await get(base + "/metrics", context, basic("prometheus", PASSWORD))
        assert status == 200
        assert ("dydx_exporter_build_info", (("version", "0.1.0"),)) in parse_metrics(body)
        with pytest.raises(aiohttp.ClientError):  # plain HTTP on the TLS port
            await get(f"http://127.0.0.1:{port}/metrics", None, basic("prometheus", PASSWORD))
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0
    logs = log_path.read_text()
    for secret in (hashed, PASSWORD, "hunter2"):
        assert secret not in logs


@pytest.mark.timeout(30)
async def test_exporter_refuses_to_start_with_a_bad_web_config_naming_the_field(tmp_path):
    web_config = write_config(tmp_path, {"basic_auth_users": {"prometheus": "my-plaintext-password"}})
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *exporter_argv(port, web_config),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        await kill_if_running(proc)
    assert proc.returncode == 2
    text = (stdout + stderr).decode()
    assert "basic_auth_users.prometheus" in text and "bcrypt" in text
    assert "my-plaintext-password" not in text
