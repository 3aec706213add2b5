"""`--web.config.file` in the Prometheus exporter-toolkit format: TLS and bcrypt basic auth, so a
Prometheus configured for a Go exporter's TLS and auth scrapes this one unchanged."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ssl
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml
from starlette.types import ASGIApp, Receive, Scope, Send


class WebConfigError(ValueError):
    pass


_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users"}
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version",
             "max_version", "cipher_suites", "prefer_server_cipher_suites",
             "curve_preferences", "client_allowed_sans"}


@dataclass(frozen=True, slots=True)
class WebConfig:
    tls: ssl.SSLContext | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


def load_web_config(path: str) -> WebConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise WebConfigError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError:
        raise WebConfigError(f"{path} is not valid YAML") from None
    if not isinstance(raw, dict) or set(raw) - _TOP_KEYS:
        raise WebConfigError(f"{path}: top-level keys are {', '.join(sorted(_TOP_KEYS))}")
    base = Path(path).parent
    return WebConfig(
        tls=_tls_context(raw.get("tls_server_config"), base),
        users=_users(raw.get("basic_auth_users")),
        headers=_headers(raw.get("http_server_config")),
    )


def _resolve(base: Path, value: Any) -> str:
    p = Path(str(value))
    return str(p if p.is_absolute() else base / p)


def _tls_context(raw: Any, base: Path) -> ssl.SSLContext | None:
    if not raw:
        return None
    if not isinstance(raw, dict) or set(raw) - _TLS_KEYS:
        raise WebConfigError(f"tls_server_config takes {', '.join(sorted(_TLS_KEYS))}")
    if not raw.get("cert_file") or not raw.get("key_file"):
        raise WebConfigError("tls_server_config needs cert_file and key_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _version(raw.get("min_version", "TLS12"), "min_version")
    if raw.get("max_version"):
        ctx.maximum_version = _version(raw["max_version"], "max_version")
    try:
        ctx.load_cert_chain(_resolve(base, raw["cert_file"]), _resolve(base, raw["key_file"]))
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"cannot load cert_file/key_file: {exc}") from None
    auth = raw.get("client_auth_type", "NoClientCert")
    if auth not in _CLIENT_AUTH:
        raise WebConfigError(f"client_auth_type {auth!r} is not one of {', '.join(_CLIENT_AUTH)}")
    ctx.verify_mode = _CLIENT_AUTH[auth]
    if raw.get("client_ca_file"):
        try:
            ctx.load_verify_locations(_resolve(base, raw["client_ca_file"]))
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(f"cannot load client_ca_file: {exc}") from None
    elif "Verify" in auth:
        raise WebConfigError(f"client_auth_type {auth} needs client_ca_file")
    return ctx


def _version(value: Any, key: str) -> ssl.TLSVersion:
    if value not in _VERSIONS:
        raise WebConfigError(f"{key} {value!r} is not one of {', '.join(_VERSIONS)}")
    return _VERSIONS[value]


def _users(raw: Any) -> dict[str, bytes]:
    if not raw:
        return {}
    if not isinstance(raw, dict):
        raise WebConfigError("basic_auth_users must map user names to bcrypt hashes")
    users = {}
    for name, hashed in raw.items():
        value = str(hashed).encode()
        if not value.startswith((b"$2a$", b"$2b$", b"$2y$")):
            raise WebConfigError(f"basic_auth_users: the hash of user {name!r} is not bcrypt")
        users[str(name)] = value
    return users


def _headers(raw: Any) -> dict[str, str]:
    if not raw:
        return {}
    if not isinstance(raw, dict):
        raise WebConfigError("http_server_config must be a mapping")
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict):
        raise WebConfigError("http_server_config.headers must be a mapping")
    return {str(k): str(v) for k, v in headers.items()}


class BasicAuthMiddleware:
    """Checks bcrypt basic auth. bcrypt costs tens of milliseconds by design, so the check runs
    in a thread, off the event loop, and a verified (user, password) pair is remembered by its
    salted SHA-256, as exporter-toolkit does. An unknown user costs one bcrypt check against a
    fixed dummy hash, like a known one, so timing does not tell which users exist."""

    def __init__(self, app: ASGIApp, users: Mapping[str, bytes], max_cache: int = 1024) -> None:
        self.app = app
        self.users = users
        self.max_cache = max_cache
        self._salt = bcrypt.gensalt()
        self._dummy = bcrypt.hashpw(b"not a password", bcrypt.gensalt())
        self._verified: set[bytes] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or await self._authorized(scope):
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"www-authenticate", b'Basic realm="tradesense-exporter"'),
            (b"content-type", b"text/plain; charset=utf-8")]})
        await send({"type": "http.response.body", "body": b"Unauthorized\n"})

    async def _authorized(self, scope: Scope) -> bool:
        credentials = _credentials(scope)
        if credentials is None:
            return False
        user, password = credentials
        known = self.users.get(user.decode(errors="replace"))
        hashed = known if known is not None else self._dummy
        key = hashlib.sha256(self._salt + user + b"\0" + password + b"\0" + hashed).digest()
        if known is not None and key in self._verified:
            return True
        ok = await asyncio.to_thread(_checkpw, password, hashed)
        if not ok or known is None:
            return False
        if len(self._verified) >= self.max_cache:
            self._verified.clear()
        self._verified.add(key)
        return True


def _credentials(scope: Scope) -> tuple[bytes, bytes] | None:
    header = dict(scope["headers"]).get(b"authorization", b"")
    scheme, _, encoded = header.partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return None
    return (user, password) if sep else None


def _checkpw(password: bytes, hashed: bytes) -> bool:
    """bcrypt reads at most 72 bytes; bcrypt 5 refuses longer passwords rather than cut them."""
    if len(password) > 72:
        return False
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False


class HeadersMiddleware:
    def __init__(self, app: ASGIApp, headers: Mapping[str, str]) -> None:
        self.app = app
        self.extra = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
