"""`--web.config.file` in the Prometheus exporter-toolkit format: TLS and bcrypt basic auth, so a
Prometheus configured for a Go exporter's TLS and auth scrapes this one unchanged. The same format
serves `--otlp.config.file`, which also takes `bearer_token_file` (see exporter/auth.py)."""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
_BEARER_KEY = "bearer_token_file"
_BCRYPT = re.compile(rb"\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}")
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version",
             "max_version", "cipher_suites", "prefer_server_cipher_suites",
             "curve_preferences", "client_allowed_sans"}


@dataclass(frozen=True, slots=True)
class WebConfig:
    tls: ssl.SSLContext | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    bearer_token: bytes | None = None


def load_web_config(path: str, bearer: bool = False) -> WebConfig:
    """The file's settings; with `bearer` (the OTLP listener's file) also `bearer_token_file`,
    a file holding the token that OTLP exporters send as `Authorization: Bearer <token>`."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise WebConfigError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError:
        raise WebConfigError(f"{path} is not valid YAML") from None
    allowed = _TOP_KEYS | {_BEARER_KEY} if bearer else _TOP_KEYS
    if not isinstance(raw, dict) or set(raw) - allowed:
        raise WebConfigError(f"{path}: top-level keys are {', '.join(sorted(allowed))}")
    base = Path(path).parent
    return WebConfig(
        tls=_tls_context(raw.get("tls_server_config"), base),
        users=_users(raw.get("basic_auth_users")),
        headers=_headers(raw.get("http_server_config")),
        bearer_token=_token(raw.get(_BEARER_KEY), base),
    )


def _token(raw: Any, base: Path) -> bytes | None:
    if raw is None:
        return None
    path = _resolve(base, raw)
    try:
        token = Path(path).read_bytes().strip()
    except OSError as exc:
        raise WebConfigError(f"cannot read bearer_token_file {path}: {exc.strerror}") from None
    if len(token) < 16:
        raise WebConfigError(f"bearer_token_file {path} must hold a token of 16 bytes or more")
    return token


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
        if not _BCRYPT.fullmatch(value):
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
