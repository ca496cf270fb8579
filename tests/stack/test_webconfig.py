"""--web.config.file: the exporter-toolkit format, checked by the real promtool and served over real HTTPS."""

from __future__ import annotations

import asyncio
import base64
import itertools
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import yaml
from aiohttp import web
from structlog.testing import capture_logs

from exporter.web.webconfig import WebConfig, WebConfigError, load_web_config
from tests.fixtures.tools import promtool
from tests.stack.certs import CertificateAuthority, Issued

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Pki:
    """The server's CA and certificate, the CA of client certificates and a client it issued, and a client
    certificate from a CA the server does not trust; every file in the test's directory."""

    ca: CertificateAuthority
    server: Issued
    client_ca: CertificateAuthority
    client: Issued
    rogue_client: Issued


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = CertificateAuthority.create(tmp_path, "server-ca")
    client_ca = CertificateAuthority.create(tmp_path, "client-ca")
    rogue_ca = CertificateAuthority.create(tmp_path, "rogue-ca")
    return Pki(
        ca=ca,
        server=ca.issue(tmp_path, "exporter", server=True, sans=("127.0.0.1", "localhost")),
        client_ca=client_ca,
        client=client_ca.issue(tmp_path, "prometheus", server=False, sans=("prometheus.example",)),
        rogue_client=rogue_ca.issue(tmp_path, "intruder", server=False, sans=("prometheus.example",)),
    )


def write_config(directory: Path, doc: Mapping[str, object], name: str = "web.yml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def bcrypt_hash(password: str, cost: int = 4) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()


def promtool_check(path: Path) -> subprocess.CompletedProcess[str]:
    return promtool("check", "web-config", str(path), timeout=30)


def load_checked(path: Path) -> WebConfig:
    """The web config at `path`, which promtool must accept too."""
    check = promtool_check(path)
    assert check.returncode == 0, check.stdout + check.stderr
    return load_web_config(path)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@asynccontextmanager
async def serve(config: WebConfig) -> AsyncIterator[str]:
    """A tiny app behind the config's TLS and middlewares, on a free loopback port."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text="dydx_up 1\n")

    app = web.Application(middlewares=config.middlewares())
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        context = config.ssl_context()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = runner.addresses[0][1]
        yield f"{'https' if context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def client_context(ca: CertificateAuthority, identity: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    if identity is not None:
        context.load_cert_chain(identity.cert_file, identity.key_file)
    return context


async def get(url: str, context: ssl.SSLContext | None = None, headers: dict[str, str] | None = None):
    connector = aiohttp.TCPConnector(ssl=context if context is not None else False)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url, headers=headers or {}, timeout=aiohttp.ClientTimeout(total=10)) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.text()


def tls_auth_config(tmp_path: Path, pki: Pki, **tls_extra: object) -> Path:
    server = pki.server
    return write_config(
        tmp_path,
        {
            "tls_server_config": {
                "cert_file": server.cert_file.name,  # relative: resolved against the config's directory
                "key_file": server.key_file.name,
                "min_version": "TLS12",
                **tls_extra,
            },
            "http_server_config": {
                "headers": {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"}
            },
            "basic_auth_users": {"prometheus": bcrypt_hash(PASSWORD)},
        },
    )


def mutual_tls_config(tmp_path: Path, pki: Pki, **tls_extra: object) -> Path:
    """tls_auth_config requiring a client certificate from the client CA."""
    return tls_auth_config(
        tmp_path,
        pki,
        client_auth_type="RequireAndVerifyClientCert",
        client_ca_file=pki.client_ca.cert_file.name,
        **tls_extra,
    )


@pytest.mark.timeout(60)
async def test_https_with_basic_auth_lets_only_the_right_password_in(tmp_path, pki):
    config = load_checked(tls_auth_config(tmp_path, pki))
    context = client_context(pki.ca)
    async with serve(config) as base:
        assert base.startswith("https://")
        status, headers, _ = await get(base + "/metrics", context)
        assert status == 401
        assert headers["WWW-Authenticate"].startswith("Basic ")
        assert headers["X-Frame-Options"] == "deny"  # configured headers ride on refusals too

        assert (await get(base + "/metrics", context, basic("prometheus", "wrong")))[0] == 401
        assert (await get(base + "/metrics", context, basic("nobody", PASSWORD)))[0] == 401
        assert (await get(base + "/metrics", context, {"Authorization": "Basic !!notbase64"}))[0] == 401
        assert (await get(base + "/metrics", context, basic("prometheus", PASSWORD + "x" * 80)))[0] == 401

        status, headers, body = await get(base + "/metrics", context, basic("prometheus", PASSWORD))
        assert status == 200
        assert body == "dydx_up 1\n"
        assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.timeout(60)
async def test_plain_http_refuses_a_tls_client_and_tls_refuses_plain_http(tmp_path, pki):
    config = load_web_config(tls_auth_config(tmp_path, pki))
    async with serve(config) as base:
        with pytest.raises(aiohttp.ClientError):
            await get(base.replace("https://", "http://") + "/metrics", None, basic("prometheus", PASSWORD))
        rogue = CertificateAuthority.create(tmp_path, "unrelated-ca")
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await get(base + "/metrics", client_context(rogue), basic("prometheus", PASSWORD))


@pytest.mark.timeout(60)
async def test_mutual_tls_requires_a_client_certificate_from_the_configured_ca(tmp_path, pki):
    config = load_checked(mutual_tls_config(tmp_path, pki))
    ca, client, rogue = pki.ca, pki.client, pki.rogue_client
    auth = basic("prometheus", PASSWORD)
    async with serve(config) as base:
        status, _, _ = await get(base + "/metrics", client_context(ca, client), auth)
        assert status == 200
        for identity in (None, rogue):  # no certificate, or one from a CA the server does not trust
            with pytest.raises(aiohttp.ClientError):
                await get(base + "/metrics", client_context(ca, identity), auth)


@pytest.mark.timeout(60)
async def test_client_san_must_be_allowed(tmp_path, pki):
    # client_allowed_sans is newer than the Debian promtool (2.42), so promtool is not asked here.
    path = mutual_tls_config(tmp_path, pki, client_allowed_sans=["grafana.example"])
    config = load_web_config(path)
    async with serve(config) as base:
        status, _, _ = await get(
            base + "/metrics", client_context(pki.ca, pki.client), basic("prometheus", PASSWORD)
        )
        assert status == 403


@pytest.mark.timeout(60)
async def test_unknown_user_costs_a_bcrypt_and_a_verified_password_is_cached(tmp_path):
    cost = 12  # ~0.3 s a verification: far above a loopback request, even on a busy machine
    path = write_config(tmp_path, {"basic_auth_users": {"prometheus": bcrypt_hash(PASSWORD, cost)}})
    config = load_web_config(path)
    reference = bcrypt_hash("y", cost).encode()
    durations = []
    for _ in range(2):
        started = time.perf_counter()
        bcrypt.checkpw(b"x", reference)
        durations.append(time.perf_counter() - started)
    one_bcrypt = min(durations)

    async def timed(headers: dict[str, str]) -> tuple[int, float]:
        t0 = time.perf_counter()
        status, _, _ = await get(base + "/metrics", None, headers)
        return status, time.perf_counter() - t0

    async with serve(config) as base:
        status, unknown_user = await timed(basic("nobody", PASSWORD))
        assert status == 401
        status, wrong_password = await timed(basic("prometheus", "wrong"))
        assert status == 401
        # Both paths run bcrypt at the configured cost: who exists does not show in the timing.
        assert unknown_user >= 0.5 * one_bcrypt
        assert wrong_password >= 0.5 * one_bcrypt
        status, first = await timed(basic("prometheus", PASSWORD))
        assert status == 200
        scrapes = [await timed(basic("prometheus", PASSWORD)) for _ in range(5)]
        assert all(s == 200 for s, _ in scrapes)
        # Repeated scrapes with the right password are served from the cache, not bcrypt each time.
        assert first >= 0.5 * one_bcrypt
        assert max(t for _, t in scrapes) < 0.5 * one_bcrypt
        status, again_wrong = await timed(basic("prometheus", "wrong"))
        assert status == 401 and again_wrong >= 0.5 * one_bcrypt  # failures are never cached


@pytest.mark.timeout(60)
async def test_bcrypt_does_not_block_the_event_loop(tmp_path):
    hashed = bcrypt_hash(PASSWORD, 12)
    started = time.perf_counter()
    bcrypt.checkpw(b"wrong", hashed.encode())
    one_bcrypt = time.perf_counter() - started
    config = load_web_config(write_config(tmp_path, {"basic_auth_users": {"prometheus": hashed}}))
    async with serve(config) as base:
        ticks: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        try:
            statuses = await asyncio.gather(
                *(get(base + "/metrics", None, basic("prometheus", "wrong")) for _ in range(3))
            )
        finally:
            stop.set()
            await task
        assert [status for status, _, _ in statuses] == [401, 401, 401]
        # Three verifications ran, yet the loop (which also carries the feed) never stalled for one.
        longest_stall = max(b - a for a, b in itertools.pairwise(ticks))
        assert ticks[-1] - ticks[0] >= 2 * one_bcrypt
        assert longest_stall < 0.5 * one_bcrypt


async def test_no_secret_reaches_the_logs_or_the_repr(tmp_path, pki):
    hashed = bcrypt_hash(PASSWORD)
    path = write_config(tmp_path, {"basic_auth_users": {"prometheus": hashed}})
    with capture_logs() as logs:
        config = load_web_config(path)
        async with serve(config) as base:
            await get(base + "/metrics", None, basic("prometheus", PASSWORD))
            await get(base + "/metrics", None, basic("prometheus", "hunter2"))
    text = repr(logs) + repr(config)
    assert any(entry["event"] == "web_config_loaded" for entry in logs)
    for secret in (hashed, PASSWORD, "hunter2"):
        assert secret not in text


def test_empty_or_absent_file_means_plain_http(tmp_path):
    assert load_web_config(None).ssl_context() is None
    empty = write_config(tmp_path, {})
    empty.write_text("", encoding="utf-8")
    config = load_web_config(empty)
    assert config.ssl_context() is None and config.middlewares() == []
    assert promtool_check(empty).returncode == 0


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"basic_auth_users": {"prometheus": "plaintext-password"}}, "basic_auth_users.prometheus"),
        ({"http_server_config": {"headers": {"X-Powered-By": "me"}}}, "headers"),
        ({"http_server_config": {"headers": {"X-Frame-Options": "allow"}}}, "X-Frame-Options"),
        ({"tls_server_config": {"cert_file": "exporter.crt"}}, "key_file"),
        ({"tls_server_config": {"key_file": "exporter.key"}}, "cert_file"),
        ({"tls_server_cfg": {}}, "unknown field"),
        ({"tls_server_config": {"cert_file": "x", "key_file": "y", "min_version": "TLS14"}}, "min_version"),
    ],
)
def test_invalid_files_fail_naming_the_field_and_promtool_agrees(tmp_path, pki, doc, field):
    # `pki` writes the certificate files the documents name: only the named field can be wrong.
    path = write_config(tmp_path, doc)
    with pytest.raises(WebConfigError) as excinfo:
        load_web_config(path)
    assert field in str(excinfo.value)
    assert "plaintext-password" not in str(excinfo.value)
    assert promtool_check(path).returncode != 0


def test_a_yaml_syntax_error_names_the_line_but_does_not_quote_it(tmp_path):
    path = tmp_path / "web.yml"
    path.write_text('basic_auth_users:\n  prometheus: "hunter2\n', encoding="utf-8")
    with pytest.raises(WebConfigError, match=r"line \d+, column \d+") as excinfo:
        load_web_config(path)
    assert "hunter2" not in str(excinfo.value)


def test_modes_python_cannot_honour_are_refused(tmp_path, pki):
    server = pki.server
    tls = {"cert_file": str(server.cert_file), "key_file": str(server.key_file)}
    for doc in (
        {"tls_server_config": {**tls, "client_auth_type": "RequireAnyClientCert"}},
        {"tls_server_config": {**tls, "client_ca_file": str(server.cert_file)}},  # CA but no client auth
        {"tls_server_config": {**tls, "min_version": "TLS13", "max_version": "TLS12"}},
    ):
        with pytest.raises(WebConfigError, match="tls_server_config"):
            load_web_config(write_config(tmp_path, doc))
    missing = write_config(tmp_path, {"tls_server_config": {"cert_file": "nope.crt", "key_file": "nope.key"}})
    with pytest.raises(WebConfigError, match=r"nope\.crt"):
        load_web_config(missing)
