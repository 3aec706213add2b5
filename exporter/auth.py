"""Authentication in front of a listener: bcrypt basic auth (the exporter-toolkit web-config's
`basic_auth_users`) and, on the OTLP listener, a bearer token.

Three properties hold under an auth storm:
- Timing does not tell which users exist: an unknown user costs one bcrypt check against a dummy
  hash of the highest cost among the configured hashes, as a known user does.
- bcrypt checks run in a small pool of their own and at most `auth.max_pending_checks` are
  pending (queued or running), `auth.max_pending_checks_per_client` from one client address;
  past that a request is refused at once with 503 and `Retry-After`, rather than queued behind
  the storm, and one noisy source leaves room for everyone else's first login.
- A verified (user, password, hash) triple is remembered by its HMAC under a key drawn at
  start-up, in a bounded LRU, so a legitimate client that logged in once never waits behind
  the queue again. Only correct passwords of configured users enter it, so an attacker cannot
  fill or probe it; it holds no password, only 32-byte digests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import bcrypt
from starlette.types import ASGIApp, Receive, Scope, Send

from exporter.exposition import Family, counter, gauge
from exporter.limits import AuthLimits

log = logging.getLogger("exporter.auth")

Verdict = Literal["ok", "unauthorized", "overloaded"]
REJECT_REASONS: tuple[Verdict, ...] = ("unauthorized", "overloaded")
CACHE_ENTRIES = 1024
DEFAULT_COST = 10
RETRY_AFTER_SECONDS = b"1"
CheckPw = Callable[[bytes, bytes], bool]


def hash_cost(hashed: bytes) -> int:
    return int(hashed[4:6])


def check_workers() -> int:
    """One core stays free for the event loop: bcrypt releases the GIL and burns a core each."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


def checkpw(password: bytes, hashed: bytes) -> bool:
    """bcrypt reads at most 72 bytes; bcrypt 5 refuses longer passwords rather than cut them."""
    if len(password) > 72:
        return False
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False


class Authenticator:
    def __init__(
        self,
        users: Mapping[str, bytes],
        bearer_token: bytes | None = None,
        limits: AuthLimits | None = None,
        check: CheckPw = checkpw,
        workers: int | None = None,
        cache_entries: int = CACHE_ENTRIES,
    ) -> None:
        self.users = dict(users)
        self.token_digest = hashlib.sha256(bearer_token).digest() if bearer_token else None
        limits = limits or AuthLimits()
        self.max_pending = limits.max_pending_checks
        self.max_pending_per_client = limits.max_pending_checks_per_client
        self.check = check
        self.cache_entries = cache_entries
        self.pending = 0
        self._pending_by_client: dict[str, int] = {}
        self.cache_hits = 0
        self.rejected: dict[Verdict, int] = dict.fromkeys(REJECT_REASONS, 0)
        self._key = os.urandom(32)
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._dummy = bcrypt.hashpw(b"not a password", bcrypt.gensalt(self.dummy_cost()))
        self._executor = ThreadPoolExecutor(workers or check_workers(), "bcrypt")
        if len({hash_cost(h) for h in self.users.values()}) > 1:
            log.warning("basic_auth_users hashes have different bcrypt costs: timing tells the "
                        "users of lower cost apart; rehash them at one cost")

    def dummy_cost(self) -> int:
        return max((hash_cost(h) for h in self.users.values()), default=DEFAULT_COST)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def verify(self, header: bytes, client: str = "") -> Verdict:
        scheme, _, value = header.partition(b" ")
        scheme = scheme.lower()
        if scheme == b"bearer" and self.token_digest is not None:
            presented = hashlib.sha256(value.strip()).digest()
            return "ok" if hmac.compare_digest(presented, self.token_digest) else "unauthorized"
        if scheme == b"basic" and self.users:
            credentials = _basic_credentials(value)
            if credentials is not None:
                return await self._verify_basic(*credentials, client)
        return "unauthorized"

    async def _verify_basic(self, user: bytes, password: bytes, client: str) -> Verdict:
        known = self.users.get(user.decode(errors="replace"))
        hashed = known if known is not None else self._dummy
        key = hmac.new(self._key, len(user).to_bytes(4, "big") + user + hashed + password,
                       hashlib.sha256).digest()
        if key in self._verified and known is not None:
            self._verified.move_to_end(key)
            self.cache_hits += 1
            return "ok"
        mine = self._pending_by_client.get(client, 0)
        if self.pending >= self.max_pending or mine >= self.max_pending_per_client:
            return "overloaded"
        self.pending += 1
        self._pending_by_client[client] = mine + 1
        try:
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(self._executor, self.check, password, hashed)
        finally:
            self.pending -= 1
            self._release(client)
        if not ok or known is None:
            return "unauthorized"
        self._verified[key] = None
        if len(self._verified) > self.cache_entries:
            self._verified.popitem(last=False)
        return "ok"


    def _release(self, client: str) -> None:
        left = self._pending_by_client[client] - 1
        if left:
            self._pending_by_client[client] = left
        else:
            del self._pending_by_client[client]


def _basic_credentials(encoded: bytes) -> tuple[bytes, bytes] | None:
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return None
    return (user, password) if sep else None


OnReject = Callable[[Scope, Verdict], None]


class AuthMiddleware:
    """401 without valid credentials, 503 with `Retry-After` when the check queue is full;
    each refusal counted (by the authenticator and `on_reject`), none logged."""

    def __init__(self, app: ASGIApp, auth: Authenticator, on_reject: OnReject | None = None,
                 realm: str = "tradesense-exporter") -> None:
        self.app = app
        self.auth = auth
        self.on_reject = on_reject
        self.challenges = []
        if auth.users:
            self.challenges.append((b"www-authenticate", f'Basic realm="{realm}"'.encode()))
        if auth.token_digest is not None:
            self.challenges.append((b"www-authenticate", f'Bearer realm="{realm}"'.encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        client = scope.get("client")
        verdict = await self.auth.verify(header, client[0] if client else "")
        if verdict == "ok":
            await self.app(scope, receive, send)
            return
        self.auth.rejected[verdict] += 1
        if self.on_reject is not None:
            self.on_reject(scope, verdict)
        if verdict == "overloaded":
            await _respond(send, 503, [(b"retry-after", RETRY_AFTER_SECONDS)],
                           b"Too many authentication checks pending; retry later\n")
        else:
            await _respond(send, 401, self.challenges, b"Unauthorized\n")


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]],
                   body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        *headers, (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def auth_families(listeners: Iterable[tuple[str, Authenticator]]) -> list[Family]:
    rejected = counter("tradesense_exporter_auth_rejected_total",
                       "Requests refused by authentication, by listener and reason "
                       "(unauthorized: 401; overloaded: 503, too many bcrypt checks pending).")
    pending = gauge("tradesense_exporter_auth_pending_checks",
                    "bcrypt checks queued or running, by listener.")
    hits = counter("tradesense_exporter_auth_cache_hits_total",
                   "Basic-auth logins answered from the cache of verified credentials.")
    for listener, auth in listeners:
        for reason, n in auth.rejected.items():
            rejected.add(n, (("listener", listener), ("reason", reason)))
        pending.add(auth.pending, (("listener", listener),))
        hits.add(auth.cache_hits, (("listener", listener),))
    return [rejected, pending, hits]
