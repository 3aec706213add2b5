"""Scrape failures, named precisely and without credentials."""

from __future__ import annotations

import asyncio
import socket
import ssl

import redis.exceptions


class ScrapeError(Exception):
    """A target could not be scraped. `reason` is safe to log and to show on /healthz."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ReplyTooLarge(ScrapeError):
    """A reply would exceed `redis.max_reply_bytes`; raised before it is buffered."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"reply too large (over {limit} bytes)")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def classify(exc: BaseException, timeout: float | None = None) -> ScrapeError:
    """Map whatever the connection raised onto one short, credential-free reason."""
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, ScrapeError):
            return e
        if isinstance(e, redis.exceptions.AuthenticationError) or is_auth_reply(e):
            return ScrapeError("authentication failed")
        if isinstance(e, ssl.SSLCertVerificationError):
            return ScrapeError(f"TLS failure: certificate verify failed ({e.verify_message})")
        if isinstance(e, ssl.SSLError):
            return ScrapeError(f"TLS failure: {e.reason or 'handshake failed'}")
        if isinstance(e, ConnectionRefusedError):
            return ScrapeError("connection refused")
        if isinstance(e, socket.gaierror):
            return ScrapeError("cannot resolve host")
        if isinstance(e, FileNotFoundError):
            return ScrapeError("unix socket not found")
        if isinstance(e, PermissionError):
            return ScrapeError("permission denied")
    for e in chain:
        if isinstance(e, (asyncio.TimeoutError, TimeoutError, redis.exceptions.TimeoutError)):
            suffix = f" after {timeout:g}s" if timeout else ""
            return ScrapeError(f"timeout{suffix}")
        if isinstance(e, (ConnectionResetError, BrokenPipeError)):
            return ScrapeError("connection reset by server")
        if isinstance(e, (redis.exceptions.ConnectionError, OSError, EOFError)):
            return ScrapeError("connection closed by server")
    return ScrapeError(f"unexpected error ({type(exc).__name__})")


def is_auth_reply(e: BaseException) -> bool:
    if not isinstance(e, redis.exceptions.ResponseError):
        return False
    return str(e).split(" ", 1)[0] in {"NOAUTH", "WRONGPASS"}
