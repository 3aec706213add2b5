"""A memo bounded by bytes as well as entries: names and labels repeat on every push and every
scrape, but a hostile producer can send a megabyte of name, so counting entries is not enough."""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """`put` keeps an entry of `size` bytes (the caller's measure: its key and value) unless it
    is over an eighth of `max_bytes`; when either bound would be passed, the memo starts over."""

    __slots__ = ("_data", "bytes", "max_bytes", "max_entries")

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._data: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._data.get(key)

    def put(self, key: K, value: V, size: int) -> V:
        if size > self.max_bytes // 8:
            return value
        if len(self._data) >= self.max_entries or self.bytes + size > self.max_bytes:
            self._data.clear()
            self.bytes = 0
        self._data[key] = value
        self.bytes += size
        return value

    def __len__(self) -> int:
        return len(self._data)
