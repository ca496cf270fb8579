"""How `top` reaches one exporter: `/metrics` and `/readyz` over HTTP or HTTPS, with basic auth and the TLS
options a Prometheus scrape config has (CA, client certificate, server name, skip verification).

`load_http_config` reads those options from a YAML file in Prometheus's `http_config` shape (the one
`promtool --http.config.file` takes), so an operator can reuse what their Prometheus already scrapes with.
Every failure becomes one plain sentence (`Poll.error`), never a traceback: `top` shows it and retries.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import yaml

from exporter.top.stats import Scrape, parse

DEFAULT_URL = "http://127.0.0.1:9741/metrics"


@dataclass(frozen=True, slots=True)
class ClientOptions:
    url: str = DEFAULT_URL
    timeout: float = 5.0
    user: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False

    @property
    def readyz_url(self) -> str:
        """The exporter serves /readyz at its root whatever its telemetry path."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, "/readyz", "", ""))


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Poll:
    """One look at the exporter: its metrics and readiness, or why it could not be read."""

    scrape: Scrape | None = None
    readiness: Readiness | None = None
    error: str | None = None


def normalize_url(value: str) -> str:
    """`host:port` → `http://host:port/metrics`; a URL without a path gets `/metrics`."""
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--url must be an http(s) URL such as {DEFAULT_URL}, not {value!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/metrics", parts.query, ""))


def read_password_file(path: str) -> str:
    """The password in `path`, without the trailing newline an editor or `echo` leaves."""
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the password file {path}: {exc}") from None


def load_http_config(path: str) -> dict[str, Any]:
    """ClientOptions fields from a Prometheus `http_config` YAML file (basic_auth, tls_config); relative
    file names are relative to the file, as in Prometheus."""
    base = Path(path).resolve().parent
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping with basic_auth and/or tls_config")
    unknown = sorted(set(doc) - {"basic_auth", "tls_config"})
    if unknown:
        raise ValueError(f"{path}: unsupported {', '.join(unknown)}; supported: basic_auth, tls_config")

    def section(name: str, keys: set[str]) -> dict[str, Any]:
        value = doc.get(name) or {}
        if not isinstance(value, dict) or set(value) - keys:
            raise ValueError(f"{path}: {name} takes {', '.join(sorted(keys))}")
        return value

    def file(value: object) -> str:
        return str(base / str(value))

    out: dict[str, Any] = {}
    auth = section("basic_auth", {"username", "password", "password_file"})
    if "username" in auth:
        out["user"] = str(auth["username"])
    if "password" in auth:
        out["password"] = str(auth["password"])
    if "password_file" in auth:
        out["password"] = read_password_file(file(auth["password_file"]))
    tls = section("tls_config", {"ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify"})
    for key in ("ca_file", "cert_file", "key_file"):
        if key in tls:
            out[key] = file(tls[key])
    if "server_name" in tls:
        out["server_name"] = str(tls["server_name"])
    if "insecure_skip_verify" in tls:
        out["insecure_skip_verify"] = bool(tls["insecure_skip_verify"])
    return out


def ssl_context(options: ClientOptions) -> ssl.SSLContext | None:
    """The client TLS context for an https URL (None for http). Raises ValueError naming a bad file."""
    if urlsplit(options.url).scheme != "https":
        return None
    try:
        context = ssl.create_default_context(cafile=options.ca_file)
        if options.cert_file:
            context.load_cert_chain(options.cert_file, options.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"TLS client files: {exc}") from None
    if options.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def explain(error: BaseException, options: ClientOptions) -> str:
    """One sentence for a failed request, with the flag that fixes it when there is one."""
    url = options.url
    if isinstance(error, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        return f"TLS: the exporter's certificate is not trusted ({error}); pass --tls.ca-file"
    if isinstance(error, aiohttp.ClientSSLError | ssl.SSLError):
        return f"TLS handshake with {url} failed: {error}"
    if isinstance(error, aiohttp.ClientConnectorError):
        reason = error.os_error.strerror if error.os_error and error.os_error.strerror else str(error)
        return f"cannot connect to {error.host}:{error.port}: {reason}"
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return f"no answer from {url} within {options.timeout:g}s"
    if isinstance(error, aiohttp.ClientResponseError):
        if error.status == 401:
            hint = "wrong --user or password" if options.user else "basic auth: --user, --password-file"
            return f"{url} answered 401 Unauthorized ({hint})"
        return f"{url} answered HTTP {error.status} {error.message}"
    if isinstance(error, aiohttp.ClientError):
        return f"{url}: {type(error).__name__}: {error}"
    if isinstance(error, ValueError):
        return f"{url} did not answer in the Prometheus text format: {error}"
    return f"{url}: {type(error).__name__}: {error}"


class ExporterClient:
    """`async with ExporterClient(options) as client: poll = await client.poll()`."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self._ssl = ssl_context(options)
        self._auth = (
            aiohttp.BasicAuth(options.user, options.password or "") if options.user is not None else None
        )
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ExporterClient:
        self._session = aiohttp.ClientSession(
            auth=self._auth,
            timeout=aiohttp.ClientTimeout(total=self.options.timeout),
            connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True, limit=2),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def poll(self) -> Poll:
        assert self._session is not None, "use ExporterClient as an async context manager"
        metrics = asyncio.ensure_future(self._metrics(self._session))
        readiness = asyncio.ensure_future(self._readiness(self._session))
        try:
            scrape = await metrics
        except Exception as exc:
            readiness.cancel()
            await asyncio.gather(readiness, return_exceptions=True)
            return Poll(error=explain(exc, self.options))
        try:
            ready: Readiness | None = await readiness
        except Exception:  # an exporter without /readyz (or a proxy hiding it): metrics alone still help
            ready = None
        return Poll(scrape=scrape, readiness=ready)

    def _request_kwargs(self) -> dict[str, Any]:
        return {"server_hostname": self.options.server_name} if self.options.server_name else {}

    async def _metrics(self, session: aiohttp.ClientSession) -> Scrape:
        async with session.get(self.options.url, raise_for_status=True, **self._request_kwargs()) as resp:
            text = await resp.text()
        return parse(text, time.monotonic(), time.time())

    async def _readiness(self, session: aiohttp.ClientSession) -> Readiness:
        async with session.get(self.options.readyz_url, **self._request_kwargs()) as resp:
            body = await resp.text()
        if resp.status not in (200, 503):
            raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
        reasons = tuple(line[2:].strip() for line in body.splitlines() if line.startswith("- "))
        return Readiness(resp.status == 200, reasons)
