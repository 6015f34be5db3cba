"""ARC: the Adaptive Replacement Cache of Megiddo & Modha (FAST '03). Not safe for concurrent use.

Four LRU lists: T1 holds entries seen once recently, T2 entries seen at least
twice; B1 and B2 are *ghosts*, the keys (no values) recently evicted from T1
and T2. A target ``p`` for the size of T1 moves with the workload: a miss that
hits B1 means T1 was too small (``p`` grows), a miss that hits B2 means T2 was
(``p`` shrinks). The victim comes from T1 when T1 is over its target, else
from T2. A scan of one-time keys passes through T1 and leaves T2 alone.

The paper counts pages; here sizes are weights (see :mod:`._weight`), so with
a byte-bounded store ``p``, the lists and the adaptation step are in bytes; with
an entry bound every weight is 1 and the algorithm is the paper's, step for
step (Fig. 4, with integer adaptation steps as in common implementations).

How the paper maps onto the store protocol (put, then evict while over a
bound): :meth:`ARCPolicy.put` does the paper's bookkeeping for a request
(adapting ``p``, trimming the ghost lists, placing the key in T1 or T2) and
:meth:`ARCPolicy.evict` is ``REPLACE``. The paper calls ``REPLACE`` before the
new page enters the cache; so ``evict`` leaves the newest key out of T1's size
and never picks it while another entry is held. The store evicts only when a
bound is exceeded, so after deletes or expiries (which the paper does not
have) a miss fills the room instead of replacing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from itertools import chain

from ._weight import Weigher, check_bounds

__all__ = ["ARCPolicy"]


class ARCPolicy:
    """Adaptive Replacement Cache: recency and frequency balanced by a self-tuning target.

    ``lookup`` is a C ``dict.get``; ``touch`` moves a key to the most recent end
    of T2. A replace counts as an access.

    Args:
        capacity_entries: the store's entry bound (or give it later to :meth:`set_capacity`).
        capacity_bytes: the store's byte bound.
        values: take over the entries of another policy that shares this key-to-value
            map with the new one (W-TinyLFU's ARC mode does): ``recent`` and ``frequent``
            are its keys with their weights, least recent first, and become T1 and T2.
        recent: see ``values``.
        frequent: see ``values``.
    """

    __slots__ = (
        "_b1",
        "_b2",
        "_c",
        "_drop_t1",
        "_from_b2",
        "_newest",
        "_p",
        "_t1",
        "_t2",
        "_values",
        "_wb1",
        "_wb2",
        "_weigher",
        "_wt1",
        "_wt2",
        "lookup",
        "touch",
    )

    def __init__(
        self,
        *,
        capacity_entries: int | None = None,
        capacity_bytes: int | None = None,
        values: dict[str, bytes] | None = None,
        recent: Iterable[tuple[str, int]] = (),
        frequent: Iterable[tuple[str, int]] = (),
    ) -> None:
        self._values: dict[str, bytes] = {}
        # key -> weight; least recently used first.
        self._t1: OrderedDict[str, int] = OrderedDict()
        self._t2: OrderedDict[str, int] = OrderedDict()
        self._b1: OrderedDict[str, int] = OrderedDict()
        self._b2: OrderedDict[str, int] = OrderedDict()
        self._wt1 = self._wt2 = self._wb1 = self._wb2 = 0
        self._p = 0
        # The key of the last put and how it came in, for the REPLACE calls that follow.
        self._newest: str | None = None
        self._from_b2 = False
        self._drop_t1 = False
        self._weigher = Weigher(None, None)
        self._c: int | None = None
        self.set_capacity(capacity_entries=capacity_entries, capacity_bytes=capacity_bytes)
        if values is not None:
            self._values = values
            self._t1.update(recent)
            self._t2.update(frequent)
            self._wt1, self._wt2 = sum(self._t1.values()), sum(self._t2.values())
            if len(self._t1) + len(self._t2) != len(values):
                raise ValueError("recent and frequent must hold every key of values")
        self.lookup: Callable[[str], bytes | None] = self._values.get
        """The value of a key, or None; the lists are not touched."""
        self.touch: Callable[[str], None] = self._touch
        """Record a hit: the key moves to the most recent end of T2."""

    @property
    def p(self) -> int:
        """The current target size of T1, in weight units."""
        return self._p

    @property
    def capacity(self) -> int | None:
        """The capacity ``c`` in weight units (None until known)."""
        return self._c

    def lists(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """The held keys with their weights, of T1 and of T2, each least recent first."""
        return list(self._t1.items()), list(self._t2.items())

    def sizes(self) -> tuple[int, int, int, int]:
        """The weights of T1, T2, B1 and B2."""
        return self._wt1, self._wt2, self._wb1, self._wb2

    def set_capacity(self, *, capacity_entries: int | None, capacity_bytes: int | None) -> None:
        """Size ``c`` from the store's bounds; with none, ``c`` is learnt at the first eviction."""
        check_bounds(capacity_entries, capacity_bytes, len(self._values))
        self._weigher = Weigher(capacity_entries, capacity_bytes)
        self._c = self._weigher.capacity
        self._p = 0
        self._b1.clear()
        self._b2.clear()
        self._wb1 = self._wb2 = 0

    def _touch(self, key: str) -> None:
        t2 = self._t2
        if key in t2:
            t2.move_to_end(key)
            return
        weight = self._t1.pop(key)
        self._wt1 -= weight
        self._wt2 += weight
        t2[key] = weight

    def put(self, key: str, value: bytes, cost: int) -> bytes | None:
        """A write of ``key``: a hit if held, else a miss that may hit a ghost list."""
        values = self._values
        weight = self._weigher.weight(cost)
        old = values.get(key)
        values[key] = value
        self._drop_t1 = False
        self._from_b2 = False
        if old is not None:
            self._newest = None
            self._reweigh(key, weight)
            self._touch(key)
            return old
        self._newest = key
        c = self._c
        b1, b2 = self._b1, self._b2
        if key in b1:
            # Case II: T1 was too small. p = min(c, p + max(|B2| / |B1|, 1)).
            assert c is not None  # ghosts exist only once c is known
            step = max(self._wb2 // self._wb1, 1) * weight
            self._p = min(c, self._p + step)
            self._wb1 -= b1.pop(key)
            self._t2[key] = weight
            self._wt2 += weight
        elif key in b2:
            # Case III: T2 was too small. p = max(0, p - max(|B1| / |B2|, 1)).
            step = max(self._wb1 // self._wb2, 1) * weight
            self._p = max(0, self._p - step)
            self._wb2 -= b2.pop(key)
            self._from_b2 = True
            self._t2[key] = weight
            self._wt2 += weight
        else:
            # Case IV: a miss in both ARC(c) and DBL(2c).
            if c is not None:
                if self._wt1 + self._wb1 + weight > c:
                    # (i) |L1| = c: drop B1's oldest ghost, or, if T1 fills L1, T1's oldest entry.
                    while b1 and self._wt1 + self._wb1 + weight > c:
                        self._wb1 -= b1.popitem(last=False)[1]
                    self._drop_t1 = self._wt1 + weight > c
                else:
                    # (ii) |L1| < c: if the directory is full, drop B2's oldest ghost.
                    total = self._wt1 + self._wt2 + self._wb1 + self._wb2 + weight
                    while b2 and total > 2 * c:
                        ghost = b2.popitem(last=False)[1]
                        self._wb2 -= ghost
                        total -= ghost
            self._t1[key] = weight
            self._wt1 += weight
        if c is not None:
            # With unit weights the steps above keep both bounds (the paper's invariants);
            # entries of different weights can overshoot them.
            self._trim_ghosts()
        return None

    def _reweigh(self, key: str, weight: int) -> None:
        """Give held ``key`` a new weight (its value changed size)."""
        if key in self._t1:
            self._wt1 += weight - self._t1[key]
            self._t1[key] = weight
        else:
            self._wt2 += weight - self._t2[key]
            self._t2[key] = weight

    def remove(self, key: str) -> bytes | None:
        """Remove ``key`` (no ghost is kept: it was deleted, not evicted)."""
        value = self._values.pop(key, None)
        if value is None:
            return None
        self._newest = None
        self._drop_t1 = False
        weight = self._t1.pop(key, None)
        if weight is not None:
            self._wt1 -= weight
        else:
            self._wt2 -= self._t2.pop(key)
        return value

    def evict(self) -> tuple[str, bytes]:
        """``REPLACE``: move T1's or T2's least recent entry to its ghost list and return it."""
        if not self._values:
            raise KeyError("ARCPolicy is empty")
        t1, t2 = self._t1, self._t2
        newest = self._newest
        new_weight = 0
        t1_len, t2_len = len(t1), len(t2)
        if newest is not None:
            if newest in t1:
                new_weight = t1[newest]
                t1_len -= 1
            elif newest in t2:
                t2_len -= 1
        if self._c is None:
            # No bound was given: the store is full now, so what it held before the newcomer
            # is the capacity.
            self._c = max(1, self._wt1 + self._wt2 - new_weight)
        if self._drop_t1 and t1_len:
            # Case IV(i) with T1 = L1 = c: T1's oldest entry leaves without a ghost.
            self._drop_t1 = False
            key, weight = t1.popitem(last=False)
            self._wt1 -= weight
            return key, self._values.pop(key)
        self._drop_t1 = False
        size_t1 = self._wt1 - new_weight
        p = self._p
        if t1_len and (size_t1 > p or (self._from_b2 and size_t1 >= p) or not t2_len):
            key, weight = t1.popitem(last=False)
            self._wt1 -= weight
            self._b1[key] = weight
            self._wb1 += weight
        elif t2_len:
            key, weight = t2.popitem(last=False)
            self._wt2 -= weight
            self._b2[key] = weight
            self._wb2 += weight
        else:
            # Only the newcomer is held (it alone is over a bound): it goes, without a ghost.
            if t1:
                key, weight = t1.popitem(last=False)
                self._wt1 -= weight
            else:
                key, weight = t2.popitem(last=False)
                self._wt2 -= weight
            self._newest = None
            return key, self._values.pop(key)
        self._trim_ghosts()
        return key, self._values.pop(key)

    def _trim_ghosts(self) -> None:
        """Keep |T1| + |B1| <= c and the whole directory <= 2c, dropping the oldest ghosts."""
        c = self._c
        assert c is not None
        b1, b2 = self._b1, self._b2
        while b1 and self._wt1 + self._wb1 > c:
            self._wb1 -= b1.popitem(last=False)[1]
        while b2 and self._wt1 + self._wt2 + self._wb1 + self._wb2 > 2 * c:
            self._wb2 -= b2.popitem(last=False)[1]

    def clear(self) -> None:
        """Remove every entry and ghost; ``p`` starts again at 0."""
        for d in (self._values, self._t1, self._t2, self._b1, self._b2):
            d.clear()
        self._wt1 = self._wt2 = self._wb1 = self._wb2 = self._p = 0
        self._newest = None
        self._drop_t1 = self._from_b2 = False

    def keys(self) -> Iterator[str]:
        """Iterate over held keys: T1 then T2, each least recent first."""
        return iter(list(chain(self._t1, self._t2)))

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def _check(self) -> None:
        """Assert the internal invariants (for tests)."""
        assert set(self._t1).isdisjoint(self._t2)
        assert set(self._t1) | set(self._t2) == set(self._values)
        ghosts = set(self._b1) | set(self._b2)
        assert len(ghosts) == len(self._b1) + len(self._b2)
        assert ghosts.isdisjoint(self._values)
        for d, w in ((self._t1, self._wt1), (self._t2, self._wt2)):
            assert sum(d.values()) == w
        for d, w in ((self._b1, self._wb1), (self._b2, self._wb2)):
            assert sum(d.values()) == w
        if self._c is not None:
            assert 0 <= self._p <= self._c
