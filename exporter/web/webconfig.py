"""`--web.config.file`: TLS and basic auth in the format of Prometheus's exporter-toolkit.

The same YAML a Prometheus, node_exporter or Alertmanager operator already writes and checks with
`promtool check web-config`:

    tls_server_config:
      cert_file: server.crt            # relative paths are relative to this file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: clients-ca.crt
      min_version: TLS12
    http_server_config:
      headers:
        X-Frame-Options: deny
    basic_auth_users:
      prometheus: $2b$12$...           # bcrypt hash, e.g. `htpasswd -nBC 12 "" | tr -d ':'`

`load_web_config(path)` reads and validates the file (every error names the field) and returns a
`WebConfig`; `.ssl_context()` and `.middlewares()` plug it into the aiohttp server.

Differences from the Go implementation, all because Python's ssl module cannot express them:
`RequestClientCert` and `RequireAnyClientCert` (accept an unverified client certificate) are refused;
`curve_preferences` is validated but OpenSSL's default groups are used; `http2` is accepted and ignored
(aiohttp speaks HTTP/1.1). The file is read once at start: restart to apply changes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import secrets
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import bcrypt
import yaml
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from exporter.logs import get_logger

log = get_logger(__name__)


TLS_VERSIONS: Final[dict[str, ssl.TLSVersion]] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

#: Go crypto/tls cipher suite names → OpenSSL names. TLS 1.3 suites are accepted and, as in Go, not
#: configurable (None).
CIPHER_SUITES: Final[dict[str, str | None]] = {
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
}

CURVES: Final = frozenset({"CurveP256", "CurveP384", "CurveP521", "X25519"})

#: client_auth_type → ssl verify mode. The two Go modes that accept an unverified certificate have no
#: Python equivalent and are refused rather than silently weakened or strengthened.
CLIENT_AUTH_TYPES: Final[dict[str, ssl.VerifyMode]] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNSUPPORTED_CLIENT_AUTH_TYPES: Final = frozenset(
    {"RequestClientCert", "RequireAnyClientCert", "RequireClientCert"}
)

#: The only headers http_server_config may set, with their allowed values (None: any value), exactly as
#: the exporter-toolkit allows them.
EXTRA_HEADERS: Final[dict[str, tuple[str, ...] | None]] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

TOP_LEVEL_KEYS: Final = frozenset({"tls_server_config", "http_server_config", "basic_auth_users"})
TLS_KEYS: Final = frozenset(
    {
        "cert_file",
        "key_file",
        "client_auth_type",
        "client_ca_file",
        "cipher_suites",
        "curve_preferences",
        "min_version",
        "max_version",
        "prefer_server_cipher_suites",
        "client_allowed_sans",
    }
)
HTTP_KEYS: Final = frozenset({"http2", "headers"})

BCRYPT_HASH: Final = re.compile(r"^\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}$")
#: bcrypt looks at the first 72 bytes only; longer passwords never match (Go's bcrypt refuses them too).
BCRYPT_MAX_PASSWORD_BYTES: Final = 72

REALM: Final = "dydx-exporter"


class WebConfigError(ValueError):
    """The web config file is unreadable or invalid; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class TLSServerConfig:
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    curve_preferences: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    client_allowed_sans: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """How basic auth spends CPU. Defaults suit a Prometheus scraping every few seconds."""

    #: A verified (user, password) is remembered this long, so frequent scrapes cost one bcrypt per TTL.
    cache_ttl: float = 60.0
    cache_size: int = 64
    #: Requests waiting for a bcrypt verification beyond this get 429 instead of queueing without bound.
    max_pending: int = 32


@dataclass(frozen=True, slots=True)
class WebConfig:
    path: Path | None = None
    tls: TLSServerConfig | None = None
    # repr=False: hashes are secrets too (offline cracking), so they never reach a log line.
    basic_auth_users: Mapping[str, str] = field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    http2: bool = True
    auth: AuthSettings = field(default_factory=AuthSettings)

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server-side SSLContext, or None when the file configures no TLS. Loads the cert and key now,
        so a bad file fails at start."""
        if self.tls is None:
            return None
        return build_ssl_context(self.tls, self.path)

    def middlewares(self) -> list[Middleware]:
        """aiohttp middlewares, outermost first: security headers, client SAN check, basic auth."""
        chain: list[Middleware] = []
        if self.headers:
            chain.append(headers_middleware(self.headers))
        if self.tls is not None and self.tls.client_allowed_sans is not None:
            chain.append(client_san_middleware(self.tls.client_allowed_sans))
        if self.basic_auth_users:
            chain.append(BasicAuth(self.basic_auth_users, self.auth).middleware)
        return chain


def load_web_config(path: str | Path | None) -> WebConfig:
    """Read and validate an exporter-toolkit web config file, and log what it enables. None or "" gives
    the plain-HTTP default."""
    if path is None or str(path) == "":
        return WebConfig()
    config = read_web_config(path)
    log_web_config(config)
    return config


def read_web_config(path: str | Path) -> WebConfig:
    """Read and validate without logging (settings are parsed before logging is configured)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WebConfigError(f"web config {path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        problem = yaml_error_without_content(exc)
        raise WebConfigError(f"web config {path}: not valid YAML: {problem}") from None
    config = parse_web_config(raw, path)
    if config.tls is not None:
        build_ssl_context(config.tls, path)  # fail at start, not at the first handshake
    return config


def log_web_config(config: WebConfig) -> None:
    log.info(
        "web_config_loaded",
        path=str(config.path),
        tls=config.tls is not None,
        client_auth=config.tls.client_auth_type if config.tls else None,
        basic_auth_users=len(config.basic_auth_users),
        headers=sorted(config.headers),
    )


def yaml_error_without_content(exc: yaml.YAMLError) -> str:
    """What and where, never the offending line: PyYAML quotes it, and it may hold a password or hash."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"{exc.problem or exc.context or 'syntax error'}{where}"
    return type(exc).__name__


def parse_web_config(raw: object, path: Path) -> WebConfig:
    """Validate the parsed YAML document. Relative file paths are resolved against `path`'s directory."""
    where = f"web config {path}"
    if raw is None:
        return WebConfig(path=path)
    doc = _mapping(raw, where)
    _no_unknown_keys(doc, TOP_LEVEL_KEYS, where)
    base = path.parent
    tls = _parse_tls(doc.get("tls_server_config"), base, f"{where}: tls_server_config")
    headers, http2 = _parse_http(doc.get("http_server_config"), f"{where}: http_server_config")
    users = _parse_users(doc.get("basic_auth_users"), f"{where}: basic_auth_users")
    return WebConfig(path=path, tls=tls, basic_auth_users=users, headers=headers, http2=http2)


def _mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise WebConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _no_unknown_keys(doc: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise WebConfigError(
            f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )


def _string(doc: Mapping[str, Any], key: str, where: str, default: str = "") -> str:
    value = doc.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise WebConfigError(f"{where}.{key}: expected a string, got {type(value).__name__}")
    return value


def _string_list(doc: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WebConfigError(f"{where}.{key}: expected a list of strings")
    return tuple(value)


def _parse_tls(raw: object, base: Path, where: str) -> TLSServerConfig | None:
    if raw is None:
        return None
    doc = _mapping(raw, where)
    _no_unknown_keys(doc, TLS_KEYS, where)
    cert_file = _string(doc, "cert_file", where)
    key_file = _string(doc, "key_file", where)
    client_auth = _string(doc, "client_auth_type", where, "NoClientCert") or "NoClientCert"
    client_ca = _string(doc, "client_ca_file", where)
    if not (cert_file or key_file or client_ca or "client_auth_type" in doc):
        return None  # an empty section means plain HTTP, as in the toolkit
    if not cert_file:
        raise WebConfigError(f"{where}.cert_file: missing (required when TLS is configured)")
    if not key_file:
        raise WebConfigError(f"{where}.key_file: missing (required when TLS is configured)")
    if client_auth in UNSUPPORTED_CLIENT_AUTH_TYPES:
        raise WebConfigError(
            f"{where}.client_auth_type: {client_auth} accepts unverified client certificates and is not "
            "supported; use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"
        )
    if client_auth not in CLIENT_AUTH_TYPES:
        raise WebConfigError(
            f"{where}.client_auth_type: invalid {client_auth!r} (one of {', '.join(CLIENT_AUTH_TYPES)})"
        )
    if client_ca and client_auth == "NoClientCert":
        raise WebConfigError(f"{where}.client_ca_file: set without a client_auth_type that verifies clients")
    min_version = _string(doc, "min_version", where, "TLS12") or "TLS12"
    max_version = _string(doc, "max_version", where, "TLS13") or "TLS13"
    for key, version in (("min_version", min_version), ("max_version", max_version)):
        if version not in TLS_VERSIONS:
            raise WebConfigError(
                f"{where}.{key}: unknown TLS version {version!r} (one of {', '.join(TLS_VERSIONS)})"
            )
    if TLS_VERSIONS[min_version] > TLS_VERSIONS[max_version]:
        raise WebConfigError(f"{where}: min_version {min_version} is above max_version {max_version}")
    ciphers = _string_list(doc, "cipher_suites", where) or ()
    for name in ciphers:
        if name not in CIPHER_SUITES:
            raise WebConfigError(f"{where}.cipher_suites: unknown cipher {name!r}")
    curves = _string_list(doc, "curve_preferences", where) or ()
    for name in curves:
        if name not in CURVES:
            raise WebConfigError(f"{where}.curve_preferences: unknown curve {name!r}")
    prefer = doc.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"{where}.prefer_server_cipher_suites: expected true or false")
    sans = _string_list(doc, "client_allowed_sans", where)
    if sans is not None and client_auth != "RequireAndVerifyClientCert":
        raise WebConfigError(
            f"{where}.client_allowed_sans: requires client_auth_type RequireAndVerifyClientCert"
        )
    return TLSServerConfig(
        cert_file=base / cert_file,
        key_file=base / key_file,
        client_auth_type=client_auth,
        client_ca_file=base / client_ca if client_ca else None,
        min_version=min_version,
        max_version=max_version,
        cipher_suites=ciphers,
        curve_preferences=curves,
        prefer_server_cipher_suites=prefer,
        client_allowed_sans=sans,
    )


def _parse_http(raw: object, where: str) -> tuple[dict[str, str], bool]:
    if raw is None:
        return {}, True
    doc = _mapping(raw, where)
    _no_unknown_keys(doc, HTTP_KEYS, where)
    http2 = doc.get("http2", True)
    if not isinstance(http2, bool):
        raise WebConfigError(f"{where}.http2: expected true or false")
    headers_raw = doc.get("headers") or {}
    headers = _mapping(headers_raw, f"{where}.headers")
    result: dict[str, str] = {}
    for name, value in headers.items():
        if name not in EXTRA_HEADERS:
            raise WebConfigError(f"{where}.headers: HTTP header {name!r} can not be configured")
        if not isinstance(value, str):
            raise WebConfigError(f"{where}.headers.{name}: expected a string")
        allowed = EXTRA_HEADERS[name]
        if allowed is not None and value not in allowed:
            raise WebConfigError(
                f"{where}.headers.{name}: invalid value {value!r} (one of {', '.join(allowed)})"
            )
        result[name] = value
    return result, http2


def _parse_users(raw: object, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    doc = _mapping(raw, where)
    users: dict[str, str] = {}
    for user, hashed in doc.items():
        # Never echo the value: a mistyped plaintext password would end up in the error message.
        if not isinstance(hashed, str) or not BCRYPT_HASH.match(hashed):
            raise WebConfigError(
                f"{where}.{user}: not a bcrypt hash (expected $2y$/$2b$, e.g. from htpasswd -B)"
            )
        cost = bcrypt_cost(hashed)
        if not 4 <= cost <= 31:
            raise WebConfigError(f"{where}.{user}: bcrypt cost {cost} outside 4..31")
        users[user] = hashed
    return users


def bcrypt_cost(hashed: str) -> int:
    match = BCRYPT_HASH.match(hashed)
    if match is None:
        raise ValueError("not a bcrypt hash")
    return int(match.group(1))


def build_ssl_context(tls: TLSServerConfig, path: Path | None = None) -> ssl.SSLContext:
    where = f"web config {path}: tls_server_config" if path else "tls_server_config"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    openssl_ciphers = [c for c in (CIPHER_SUITES[name] for name in tls.cipher_suites) if c is not None]
    if openssl_ciphers:
        try:
            context.set_ciphers(":".join(openssl_ciphers))
        except ssl.SSLError as exc:
            raise WebConfigError(f"{where}.cipher_suites: not available in this OpenSSL: {exc}") from None
    for key, file in (
        ("cert_file", tls.cert_file),
        ("key_file", tls.key_file),
        ("client_ca_file", tls.client_ca_file),
    ):
        if file is not None and not file.is_file():
            raise WebConfigError(f"{where}.{key}: cannot read {file}")
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (ssl.SSLError, OSError) as exc:
        # OpenSSL's message names the failure (e.g. key values mismatch), never the key material.
        raise WebConfigError(
            f"{where}: cannot load cert_file {tls.cert_file} with key_file {tls.key_file}: {exc}"
        ) from None
    context.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    if context.verify_mode != ssl.CERT_NONE:
        try:
            if tls.client_ca_file is not None:
                context.load_verify_locations(cafile=tls.client_ca_file)
            else:
                context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        except (ssl.SSLError, OSError) as exc:
            raise WebConfigError(f"{where}.client_ca_file: cannot load {tls.client_ca_file}: {exc}") from None
    return context


def headers_middleware(headers: Mapping[str, str]) -> Middleware:
    fixed = dict(headers)

    @web.middleware
    async def add_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(fixed)
            raise
        response.headers.update(fixed)
        return response

    return add_headers


def client_san_middleware(allowed: tuple[str, ...]) -> Middleware:
    """With client_allowed_sans, a verified client certificate must also carry one of these SANs."""
    allowed_set = frozenset(allowed)

    @web.middleware
    async def check_san(request: web.Request, handler: Handler) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        sans = {str(value) for _kind, value in (peer or {}).get("subjectAltName", ())}
        if not sans & allowed_set:
            raise web.HTTPForbidden(text="client certificate SAN not allowed\n")
        return await handler(request)

    return check_san


class BasicAuth:
    """Basic auth against bcrypt hashes, without blocking the event loop or leaking who exists.

    - Unknown users are checked against a dummy hash of the same cost, so a wrong user and a wrong
      password take the same (bcrypt) time.
    - bcrypt runs in a worker thread, one at a time (it is CPU-bound: parallel runs only slow the feed),
      and at most `max_pending` requests wait; the rest get 429.
    - A successful verification is cached for `cache_ttl` under an HMAC of (user, password) keyed by a
      per-process random key: a cache hit proves knowledge of the password already, so it leaks nothing,
      and memory never holds the password itself. Failures are never cached.
    """

    def __init__(
        self, users: Mapping[str, str], settings: AuthSettings, *, clock: Callable[[], float] = time.monotonic
    ):
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        self._settings = settings
        self._clock = clock
        cost = max((bcrypt_cost(h.decode()) for h in self._users.values()), default=10)
        self._dummy_hash = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))
        self._cache_key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self._bcrypt_lock = asyncio.Lock()
        self._pending = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        credentials = parse_basic_authorization(request.headers.get("Authorization", ""))
        if credentials is None:
            raise unauthorized()
        user, password = credentials
        # Length-prefixed so that no other (user, password) split of the same bytes can share an entry.
        message = len(user).to_bytes(4, "big") + user + password
        fingerprint = hmac.new(self._cache_key, message, hashlib.sha256).digest()
        if self._cached(fingerprint):
            return await handler(request)
        if self._pending >= self._settings.max_pending:
            raise web.HTTPTooManyRequests(text="too many concurrent authentication attempts\n")
        self._pending += 1
        try:
            async with self._bcrypt_lock:
                ok = await asyncio.to_thread(self._verify, user, password)
        finally:
            self._pending -= 1
        if not ok:
            raise unauthorized()
        self._remember(fingerprint)
        return await handler(request)

    def _verify(self, user: bytes, password: bytes) -> bool:
        hashed = self._users.get(user.decode("utf-8", "surrogateescape"))
        valid_user = hashed is not None
        if len(password) > BCRYPT_MAX_PASSWORD_BYTES:
            password, valid_user = password[:BCRYPT_MAX_PASSWORD_BYTES], False
        try:
            matched = bcrypt.checkpw(password, hashed if hashed is not None else self._dummy_hash)
        except ValueError:
            matched = False
        return valid_user and matched

    def _cached(self, fingerprint: bytes) -> bool:
        expires = self._cache.get(fingerprint)
        if expires is None:
            return False
        if expires < self._clock():
            del self._cache[fingerprint]
            return False
        return True

    def _remember(self, fingerprint: bytes) -> None:
        if self._settings.cache_ttl <= 0:
            return
        self._cache[fingerprint] = self._clock() + self._settings.cache_ttl
        self._cache.move_to_end(fingerprint)
        while len(self._cache) > self._settings.cache_size:
            self._cache.popitem(last=False)


def parse_basic_authorization(header: str) -> tuple[bytes, bytes] | None:
    """`Basic base64(user:password)` → (user, password) as bytes, or None when absent or malformed."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user, password


def unauthorized() -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}, text="Unauthorized\n"
    )
