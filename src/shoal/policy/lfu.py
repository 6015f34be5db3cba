"""LFU: evict the least frequently used entry, with dynamic aging. Not safe for concurrent use.

Each entry has a *count*; the entry with the smallest count leaves first, the
least recently used among equals. Entries live in buckets, one per count, kept
in a doubly linked list in increasing order of count (the O(1) LFU of Shah,
Mitra and Matani, 2010): a hit moves its key to the next bucket, creating it if
needed, and the victim is the oldest key of the first bucket. Every operation is
O(1).

Plain LFU never forgets: a key that was hot an hour ago keeps its count and
blocks the cache for today's keys. Aging here is the *dynamic aging* of
LFU-DA (Arlitt et al., 2000): the policy keeps an age ``L``, set to the count
of each victim as it leaves; a new key starts at ``L + 1`` instead of 1, and a
hit adds one. Counts of new keys thus rise with ``L`` while the counts of keys
nobody reads stay where they are, so a key stays only while it is read about as
often as the cache turns over. Every count is at least ``L``, which is what
keeps an insert O(1): its bucket is first, second or new at the front.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator

from ._weight import check_bounds

__all__ = ["LFUPolicy"]


class _Bucket:
    """The keys of one count, least recently used first; a node of a circular list."""

    __slots__ = ("count", "keys", "next", "prev")

    def __init__(self, count: int) -> None:
        self.count = count
        self.keys: OrderedDict[str, None] = OrderedDict()
        self.prev: _Bucket = self
        self.next: _Bucket = self

    def link_after(self, node: _Bucket) -> None:
        """Insert ``self`` between ``node`` and its successor."""
        self.prev = node
        self.next = node.next
        node.next.prev = self
        node.next = self

    def unlink(self) -> None:
        """Take ``self`` out of its list."""
        self.prev.next = self.next
        self.next.prev = self.prev


class LFUPolicy:
    """Least-frequently-used with dynamic aging, on frequency buckets: O(1) per operation.

    A replace counts as an access. ``lookup`` is a C ``dict.get``; ``touch``
    moves the key one bucket up.
    """

    __slots__ = ("_age", "_head", "_values", "_where", "lookup", "touch")

    def __init__(self) -> None:
        self._values: dict[str, bytes] = {}
        self._where: dict[str, _Bucket] = {}
        # Sentinel of the circular bucket list; its count (-1) matches no real bucket.
        self._head = _Bucket(-1)
        self._age = 0
        self.lookup: Callable[[str], bytes | None] = self._values.get
        """The value of a key, or None; the count is not touched."""
        self.touch: Callable[[str], None] = self._touch
        """Count an access of a held key."""

    @property
    def age(self) -> int:
        """The count of the last victim: new keys start one above it."""
        return self._age

    def count(self, key: str) -> int | None:
        """The count of ``key`` (its frequency plus the age it started at), or None."""
        bucket = self._where.get(key)
        return None if bucket is None else bucket.count

    def set_capacity(self, *, capacity_entries: int | None, capacity_bytes: int | None) -> None:
        """Check the store's bounds; LFU's order does not depend on them."""
        check_bounds(capacity_entries, capacity_bytes, len(self._values))

    def _touch(self, key: str) -> None:
        where = self._where
        bucket = where[key]
        up = bucket.next
        count = bucket.count + 1
        if up.count != count:
            up = _Bucket(count)
            up.link_after(bucket)
        keys = bucket.keys
        del keys[key]
        up.keys[key] = None
        where[key] = up
        if not keys:
            bucket.unlink()

    def put(self, key: str, value: bytes, cost: int) -> bytes | None:
        """Insert ``key`` with count age + 1, or replace its value and count an access."""
        values = self._values
        old = values.get(key)
        values[key] = value
        if old is not None:
            self._touch(key)
            return old
        count = self._age + 1
        head = self._head
        first = head.next
        # Every count is >= age, so the bucket for age + 1 is the first or the second.
        if first.count == count:
            bucket = first
        elif first.count == count - 1 and first.next.count == count:
            bucket = first.next
        else:
            bucket = _Bucket(count)
            bucket.link_after(first if first.count == count - 1 else head)
        bucket.keys[key] = None
        self._where[key] = bucket
        return None

    def remove(self, key: str) -> bytes | None:
        """Remove ``key`` and return its value, or None."""
        bucket = self._where.pop(key, None)
        if bucket is None:
            return None
        del bucket.keys[key]
        if not bucket.keys:
            bucket.unlink()
        return self._values.pop(key)

    def evict(self) -> tuple[str, bytes]:
        """Remove and return the least recently used key of the smallest count; age to it."""
        bucket = self._head.next
        if bucket is self._head:
            raise KeyError("LFUPolicy is empty")
        key, _ = bucket.keys.popitem(last=False)
        if not bucket.keys:
            bucket.unlink()
        self._age = bucket.count
        del self._where[key]
        return key, self._values.pop(key)

    def clear(self) -> None:
        """Remove every entry and reset the age."""
        self._values.clear()
        self._where.clear()
        self._head = _Bucket(-1)
        self._age = 0

    def keys(self) -> Iterator[str]:
        """Iterate over keys from the next victim to the most frequently used."""
        head = self._head
        bucket = head.next
        while bucket is not head:
            yield from list(bucket.keys)
            bucket = bucket.next

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def _check(self) -> None:
        """Assert the internal invariants (for tests)."""
        head, seen, previous = self._head, 0, self._age - 1
        bucket = head.next
        while bucket is not head:
            assert bucket.keys, "empty bucket left linked"
            assert bucket.count > previous, "buckets out of order"
            assert bucket.count >= self._age, "count below the age"
            assert bucket.next.prev is bucket
            for key in bucket.keys:
                assert self._where[key] is bucket
            seen += len(bucket.keys)
            previous = bucket.count
            bucket = bucket.next
        assert seen == len(self._where) == len(self._values)
