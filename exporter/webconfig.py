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
# Go's names of the TLS 1.0-1.2 suites crypto/tls counts as secure, and OpenSSL's for them.
_CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
_CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1",
           "X25519": "X25519"}
_SAN_KINDS = ("DNS", "IP Address", "email", "URI")
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
    if not isinstance(raw, dict):
        raise WebConfigError("tls_server_config must be a mapping")
    unknown = set(raw) - _TLS_KEYS
    if unknown:
        raise WebConfigError(f"unknown key tls_server_config.{sorted(unknown)[0]} (it takes "
                             f"{', '.join(sorted(_TLS_KEYS))})")
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
    _ciphers(ctx, raw)
    _curves(ctx, raw.get("curve_preferences"))
    _allowed_sans(ctx, raw.get("client_allowed_sans"), auth)
    return ctx


def _ciphers(ctx: ssl.SSLContext, raw: dict[str, Any]) -> None:
    """As in Go: `cipher_suites` limits TLS 1.0-1.2 (TLS 1.3's suites are not configurable)."""
    prefer = raw.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError("tls_server_config.prefer_server_cipher_suites must be true or false")
    if prefer:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    suites = raw.get("cipher_suites")
    if suites is None:
        return
    if not isinstance(suites, list) or not suites:
        raise WebConfigError("tls_server_config.cipher_suites must be a list of suite names")
    for name in suites:
        if name not in _CIPHERS:
            raise WebConfigError(
                f"tls_server_config.cipher_suites: {name!r} is not one of Go's secure TLS 1.0-1.2 "
                f"suites ({', '.join(_CIPHERS)})")
    ctx.set_ciphers(":".join(_CIPHERS[name] for name in suites))


def _curves(ctx: ssl.SSLContext, raw: Any) -> None:
    """Python's ssl sets one key-exchange group: a list of one is enforced, longer lists are
    refused rather than cut short."""
    if raw is None:
        return
    if not isinstance(raw, list) or not raw:
        raise WebConfigError("tls_server_config.curve_preferences must be a list of curve names")
    for name in raw:
        if name not in _CURVES:
            raise WebConfigError(f"tls_server_config.curve_preferences: {name!r} is not one of "
                                 f"{', '.join(_CURVES)}")
    if len(raw) > 1:
        raise WebConfigError("tls_server_config.curve_preferences: this exporter can restrict "
                             "the listener to one curve only; list one, or leave the key out")
    ctx.set_ecdh_curve(_CURVES[raw[0]])


class _SANChecked(ssl.SSLObject):
    """A server-side TLS object that fails its handshake when the client's (verified)
    certificate names none of `allowed` among its subject alternative names."""

    allowed: frozenset[str] = frozenset()

    def do_handshake(self) -> None:
        super().do_handshake()
        sans: Any = (self.getpeercert() or {}).get("subjectAltName", ())
        names = {str(v) for kind, v in sans if kind in _SAN_KINDS}
        if not names & self.allowed:
            raise ssl.SSLCertVerificationError(
                "client certificate names none of tls_server_config.client_allowed_sans")


def _allowed_sans(ctx: ssl.SSLContext, raw: Any, auth: str) -> None:
    if raw is None:
        return
    if not isinstance(raw, list) or not raw:
        raise WebConfigError("tls_server_config.client_allowed_sans must be a list of names")
    if auth != "RequireAndVerifyClientCert":
        raise WebConfigError("tls_server_config.client_allowed_sans needs client_auth_type "
                             "RequireAndVerifyClientCert")
    ctx.sslobject_class = type("SANChecked", (_SANChecked,),
                               {"allowed": frozenset(str(n) for n in raw)})


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
