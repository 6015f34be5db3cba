"""LRU: evict the least recently used entry. Not safe for concurrent use."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

__all__ = ["LRUPolicy"]


class LRUPolicy:
    """Least-recently-used order on a C ``OrderedDict``: O(1) for every operation.

    The most recently used key is at the end; :meth:`evict` pops from the front.
    """

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        """Return the value and mark ``key`` most recently used, or None."""
        data = self._data
        value = data.get(key)
        if value is not None:
            data.move_to_end(key)
        return value

    def peek(self, key: str) -> bytes | None:
        """Return the value without touching the order, or None."""
        return self._data.get(key)

    def put(self, key: str, value: bytes, cost: int) -> bytes | None:
        """Insert or replace ``key`` as the most recently used entry."""
        data = self._data
        old = data.get(key)
        data[key] = value
        if old is not None:
            data.move_to_end(key)
        return old

    def remove(self, key: str) -> bytes | None:
        """Remove ``key`` and return its value, or None."""
        return self._data.pop(key, None)

    def evict(self) -> tuple[str, bytes]:
        """Remove and return the least recently used entry."""
        try:
            return self._data.popitem(last=False)
        except KeyError:
            raise KeyError("LRUPolicy is empty") from None

    def clear(self) -> None:
        """Remove every entry."""
        self._data.clear()

    def keys(self) -> Iterator[str]:
        """Iterate over keys from least to most recently used."""
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data
