"""The exporter's HTTP server: /metrics, /healthz, /readyz and a landing page at /.

/metrics renders the registry in the Prometheus text format, or OpenMetrics when the Accept header asks
for it, gzip-compressed when the client accepts it. A registry with `render_async` (the Collector's) renders
in slices that yield to the event loop; compression runs in a worker thread (zlib releases the GIL), so a
scrape never holds up frame processing for long. Requests are small GETs: bodies, request lines and headers
are capped.
"""

from __future__ import annotations

import asyncio
import gzip
import html
import logging
import ssl
import time
from collections.abc import Sequence
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_latest_openmetrics

from exporter.feed.sink import ReadinessSource
from exporter.logs import get_logger

log = get_logger(__name__)

MAX_REQUEST_BODY_BYTES: Final = 1024
MAX_LINE_BYTES: Final = 8190
MAX_HEADER_FIELD_BYTES: Final = 8190
MAX_HEADERS: Final = 64
#: A connection that has not sent a complete request this long after it opened, or that sits idle this
#: long between requests, is closed (aiohttp's keep-alive timer also runs before the first request, so this
#: is the header timeout too). Longer than the 15 s scrape interval, so Prometheus keeps its connection.
IDLE_TIMEOUT_S: Final = 30.0
#: A client that does not read its /metrics response within this long is cut off, so abandoned readers
#: cannot hold a handler and a rendered body each.
WRITE_TIMEOUT_S: Final = 30.0
#: Smaller bodies are not worth a trip to the worker thread.
GZIP_INLINE_LIMIT: Final = 16 * 1024
GZIP_LEVEL: Final = 1
#: The classic text format every Prometheus version reads (prometheus_client now announces 1.0.0).
TEXT_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

LANDING_PAGE: Final = """<!doctype html>
<html><head><meta charset="utf-8"><title>dYdX v4 exporter</title></head>
<body>
<h1>dYdX v4 exporter</h1>
<p>Prometheus exporter for the dYdX v4 Indexer WebSocket feed.</p>
<ul>
<li><a href="{metrics}">{metrics}</a>: metrics</li>
<li><a href="/healthz">/healthz</a>: the process is alive</li>
<li><a href="/readyz">/readyz</a>: connected, subscribed and data is fresh</li>
</ul>
</body></html>
"""


def wants_openmetrics(accept: str) -> bool:
    """True when the Accept header lists application/openmetrics-text (with any parameters)."""
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media == "application/openmetrics-text":
            return True
    return False


def accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.split(","):
        pieces = part.split(";")
        if pieces[0].strip().lower() != "gzip":
            continue
        for param in pieces[1:]:
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    return float(value) > 0.0
                except ValueError:
                    return False
        return True
    return False


class _ServerLog(logging.Logger):
    """aiohttp's server logger, turned into structlog events so stderr stays one JSON object per line.

    A malformed request (what a port scanner sends: TLS on the plain port, oversized headers) is the
    client's error: a debug event without a traceback. Anything else is an error event carrying its
    traceback in one line.
    """

    def handle(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) or record.levelno < logging.WARNING:
            log.debug("http_request_rejected", message=record.getMessage()[:200], error=repr(error)[:200])
        else:
            log.error("http_server_error", message=record.getMessage()[:200], exc_info=record.exc_info)


class WebServer:
    def __init__(
        self,
        host: str,
        port: int,
        telemetry_path: str,
        registry: CollectorRegistry,
        readiness: Sequence[ReadinessSource],
        *,
        middlewares: Sequence[Any] = (),
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float = IDLE_TIMEOUT_S,
        write_timeout: float = WRITE_TIMEOUT_S,
    ) -> None:
        if not telemetry_path.startswith("/"):
            raise ValueError(f"telemetry path must start with '/', not {telemetry_path!r}")
        self._host = host
        self._requested_port = port
        self._telemetry_path = telemetry_path
        self._registry = registry
        self._readiness = list(readiness)
        self._middlewares = list(middlewares)
        self._ssl_context = ssl_context
        self._idle_timeout = idle_timeout
        self._write_timeout = write_timeout
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("WebServer is not started")
        return self._port

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=self._middlewares, client_max_size=MAX_REQUEST_BODY_BYTES)
        app.router.add_get(self._telemetry_path, self._metrics)
        if self._telemetry_path != "/healthz":
            app.router.add_get("/healthz", self._healthz)
        if self._telemetry_path != "/readyz":
            app.router.add_get("/readyz", self._readyz)
        if self._telemetry_path != "/":
            app.router.add_get("/", self._landing)
        return app

    async def start(self) -> None:
        runner = web.AppRunner(
            self.build_app(),
            access_log=None,
            handle_signals=False,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_HEADER_FIELD_BYTES,
            max_headers=MAX_HEADERS,
            keepalive_timeout=self._idle_timeout,
            logger=_ServerLog("exporter.web.http"),
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._requested_port, ssl_context=self._ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        log.info(
            "web_listening",
            host=self._host,
            port=self._port,
            telemetry_path=self._telemetry_path,
            tls=self._ssl_context is not None,
        )

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # --- handlers ---------------------------------------------------------------------------------------
    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
        render = getattr(self._registry, "render_async", None)
        if render is not None:
            body: bytes = await render(openmetrics)
        elif openmetrics:
            body = generate_latest_openmetrics(self._registry)  # type: ignore[no-untyped-call]
        else:
            body = generate_latest(self._registry)
        headers = {"Content-Type": OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE}
        if accepts_gzip(request.headers.get("Accept-Encoding", "")):
            if len(body) > GZIP_INLINE_LIMIT:
                body = await asyncio.get_running_loop().run_in_executor(None, gzip.compress, body, GZIP_LEVEL)
            else:
                body = gzip.compress(body, GZIP_LEVEL)
            headers["Content-Encoding"] = "gzip"
        headers["Vary"] = "Accept, Accept-Encoding"
        if request.method != "GET":
            return web.Response(body=body, headers=headers)
        return await self._send(request, body, headers)

    async def _send(self, request: web.Request, body: bytes, headers: dict[str, str]) -> web.StreamResponse:
        """Writes `body`, cutting the connection off if the client does not take it within the timeout."""
        response = web.StreamResponse(headers=headers)
        response.content_length = len(body)
        try:
            async with asyncio.timeout(self._write_timeout):
                await response.prepare(request)
                await response.write(body)
                await response.write_eof()
        except TimeoutError:
            log.warning(
                "scrape_write_timeout", peer=request.remote, size=len(body), seconds=self._write_timeout
            )
            if request.transport is not None:
                request.transport.abort()
        return response

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.StreamResponse:
        now = time.time()
        reasons: list[str] = []
        for source in self._readiness:
            try:
                reasons.extend(source.not_ready_reasons(now))
            except Exception as error:  # a broken source means "not ready", never a 500
                reasons.append(f"{type(source).__name__}: readiness check failed: {error!r}")
        if reasons:
            return web.Response(status=503, text="not ready\n" + "".join(f"- {r}\n" for r in reasons))
        return web.Response(text="ready\n")

    async def _landing(self, request: web.Request) -> web.StreamResponse:
        page = LANDING_PAGE.format(metrics=html.escape(self._telemetry_path))
        return web.Response(text=page, content_type="text/html")
