"""FIFO: evict the entry inserted first; reads change nothing. Not safe for concurrent use."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator

from ._weight import check_bounds

__all__ = ["FIFOPolicy"]


class FIFOPolicy:
    """First-in, first-out order on a C ``OrderedDict``: O(1) for every operation.

    An entry's place is fixed when its key is first inserted: neither a read
    nor a replace moves it. ``lookup`` is the dict's C ``get`` and ``touch`` a
    C no-op, so a store hit runs no Python code in the policy.
    """

    __slots__ = ("_data", "lookup", "touch")

    def __init__(self) -> None:
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self.lookup: Callable[[str], bytes | None] = self._data.get
        """The value of a key, or None."""
        # discard() on a set that stays empty: a no-op implemented in C.
        self.touch: Callable[[str], None] = set[str]().discard
        """Record an access: FIFO ignores accesses."""

    def set_capacity(self, *, capacity_entries: int | None, capacity_bytes: int | None) -> None:
        """Check the store's bounds; FIFO's order does not depend on them."""
        check_bounds(capacity_entries, capacity_bytes, len(self._data))

    def put(self, key: str, value: bytes, cost: int) -> bytes | None:
        """Insert ``key`` last in line, or replace its value where it stands."""
        data = self._data
        old = data.get(key)
        data[key] = value
        return old

    def remove(self, key: str) -> bytes | None:
        """Remove ``key`` and return its value, or None."""
        return self._data.pop(key, None)

    def evict(self) -> tuple[str, bytes]:
        """Remove and return the entry inserted first."""
        try:
            return self._data.popitem(last=False)
        except KeyError:
            raise KeyError("FIFOPolicy is empty") from None

    def clear(self) -> None:
        """Remove every entry."""
        self._data.clear()

    def keys(self) -> Iterator[str]:
        """Iterate over keys from the oldest insertion to the newest."""
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data
