"""LRU: evict the least recently used entry. Not safe for concurrent use."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator

from ._weight import check_bounds

__all__ = ["LRUPolicy"]


class LRUPolicy:
    """Least-recently-used order on a C ``OrderedDict``: O(1) for every operation.

    The most recently used key is at the end; :meth:`evict` pops from the front.
    ``lookup`` and ``touch`` are the dict's own C methods, so a store hit
    costs no Python call in the policy.
    """

    __slots__ = ("_data", "lookup", "touch")

    def __init__(self) -> None:
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self.lookup: Callable[[str], bytes | None] = self._data.get
        """The value of a key, or None; the order is not touched."""
        self.touch: Callable[[str], None] = self._data.move_to_end
        """Mark a held key most recently used."""

    def set_capacity(self, *, capacity_entries: int | None, capacity_bytes: int | None) -> None:
        """Check the store's bounds; LRU's order does not depend on them."""
        check_bounds(capacity_entries, capacity_bytes, len(self._data))

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
