"""Label values admitted as they come, so that a label's series stay bounded whatever the input.

Shared by the app side (instrument/) and the sidecar (the slow-query store): it imports nothing
beyond the standard library.
"""

from __future__ import annotations

import threading


class BoundedNames:
    """Admits up to `limit` distinct values of at most `max_length` characters; later newcomers
    and longer values become `overflow`."""

    def __init__(self, limit: int, overflow: str, max_length: int | None = None) -> None:
        self._limit, self._overflow, self._max_length = limit, overflow, max_length
        self._admitted: set[str] = set()
        self._lock = threading.Lock()

    def admit(self, value: str) -> str:
        if value in self._admitted:
            return value
        if self._max_length is not None and len(value) > self._max_length:
            return self._overflow
        with self._lock:
            if len(self._admitted) < self._limit:
                self._admitted.add(value)
                return value
        return self._overflow
