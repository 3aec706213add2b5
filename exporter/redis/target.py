"""A Redis target: where it is, how to reach it, and how to name it without its secrets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_PORT = 6379
SCHEMES = ("redis", "rediss", "unix")


class TargetError(ValueError):
    """A target address or its credentials cannot be used. The message never holds a secret."""


@dataclass(frozen=True, slots=True)
class TLSOptions:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """`address` is the credential-free form used in labels, logs and the /scrape allow-list."""

    address: str
    scheme: str
    host: str = ""
    port: int = DEFAULT_PORT
    path: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TLSOptions = field(default_factory=TLSOptions)

    @property
    def is_tls(self) -> bool:
        return self.scheme == "rediss"


def normalize_address(raw: str) -> str:
    """The canonical credential-free address of `raw` (`host:port` means `redis://host:port`)."""
    return parse_address(raw).address


def parse_address(raw: str) -> RedisTarget:
    """Parse a `redis://`, `rediss://` or `unix://` URL, or a bare `host:port`."""
    text = raw.strip()
    if not text:
        raise TargetError("empty Redis address")
    if "://" not in text:
        text = "redis://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise TargetError(f"invalid Redis address {_redacted(text)!r}: bad port") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise TargetError(
            f"invalid Redis address {_redacted(text)!r}: scheme must be redis, rediss or unix"
        )
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    query = parse_qs(parts.query)
    if scheme == "unix":
        path = parts.path or ""
        if not path:
            raise TargetError(f"invalid Redis address {_redacted(text)!r}: no socket path")
        db = _db_from(query.get("db", ["0"])[0], text)
        return RedisTarget(f"unix://{path}", scheme, path=path, db=db,
                           username=username or None, password=password or None)
    host = parts.hostname or ""
    if not host:
        raise TargetError(f"invalid Redis address {_redacted(text)!r}: no host")
    port = port or DEFAULT_PORT
    db = _db_from(parts.path.lstrip("/") or "0", text)
    shown_host = f"[{host}]" if ":" in host else host
    address = f"{scheme}://{shown_host}:{port}" + (f"/{db}" if db else "")
    return RedisTarget(address, scheme, host=host, port=port, db=db,
                       username=username or None, password=password or None)


def _db_from(value: str, text: str) -> int:
    try:
        db = int(value)
    except ValueError:
        raise TargetError(f"invalid Redis address {_redacted(text)!r}: bad db number") from None
    if db < 0:
        raise TargetError(f"invalid Redis address {_redacted(text)!r}: bad db number")
    return db


def _redacted(text: str) -> str:
    """The URL with any userinfo password replaced, for error messages. The last `@` ends the
    userinfo: a password may hold `/` or `@` (unencoded), a host never does."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return text
    user = userinfo.split(":", 1)[0]
    shown = f"{user}:<redacted>" if ":" in userinfo else user
    return f"{scheme}://{shown}@{hostpart}"


def redact(text: str) -> str:
    return _redacted(text)


def read_password_file(path: str, address: str) -> str | None:
    """A password file holds the password itself, or (redis_exporter's format) a JSON object
    mapping addresses to passwords."""
    try:
        content = Path(path).read_text()
    except OSError as exc:
        raise TargetError(f"cannot read password file {path}: {exc.strerror}") from None
    stripped = content.strip()
    if stripped.startswith("{"):
        try:
            mapping = json.loads(stripped)
        except json.JSONDecodeError:
            raise TargetError(f"password file {path} is not valid JSON") from None
        if not isinstance(mapping, dict):
            raise TargetError(f"password file {path} must map addresses to passwords")
        for key, value in mapping.items():
            try:
                if normalize_address(str(key)) == address:
                    return str(value)
            except TargetError:
                continue
        return None
    return stripped
