"""Frequency sketch: a 4-bit count-min sketch with periodic halving and a doorkeeper.

This is TinyLFU's popularity estimate (Einziger, Friedman & Manes, 2017), laid
out as in Caffeine's ``FrequencySketch``: 16 counters per expected entry, each
key counted in 4 of them, an estimate being the smallest of the 4. Counters
saturate at 15 (4 bits; stored one per byte, as byte arithmetic is what Python
does fastest). After ``sample_size`` (10 per expected entry) increments every
counter is halved, so the sketch forgets old popularity: it estimates
frequency in a sliding window of recent history.

The *doorkeeper* is a Bloom filter in front of the counters: the first sight
of a key only sets its doorkeeper bits, and only later sights reach the
counters. One-hit wonders, most keys of most traces, thus never take room in
the counters; the estimate is the counters' minimum plus one if the doorkeeper
has the key. The doorkeeper is cleared at every halving.

A cache hit is never a key's first sight, so hits skip the doorkeeper
(:meth:`FrequencySketch.increment_seen`): the estimate comes out the same (a
counter step and a doorkeeper bit are each worth one; the next halving only
treats the step more gently), and the hot path saves two bit probes.

Not safe for concurrent use. The hash function is injected: it must return
well-mixed integers of at least 48 bits (Python's ``hash`` of a ``str`` is keyed
SipHash, different in every process, which also keeps attackers from choosing
keys that collide).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["FrequencySketch"]

_MAX_COUNT = 15
# bytes.translate tables: every counter halved; every counter's lowest bit.
_HALVE = bytes(v >> 1 for v in range(256))
_LOW_BIT = bytes(v & 1 for v in range(256))
# Doorkeeper bits per entry (a power of two): about 6 per distinct key of a full sample.
_DOOR_BITS = 64
# The smallest table, in entries.
_MIN_SLOTS = 8


def _ceiling_power_of_two(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


class FrequencySketch:
    """Approximate access counts of recent history, in O(1) time and 24 bytes per entry.

    The sketch starts small and grows with the cache (:meth:`ensure_capacity`)
    without losing what it counted: indexes are hash bits under a power-of-two
    mask, so a table twice as large is the old table twice over, and every
    estimate stays what it was.

    Args:
        hash_fn: hashes keys (see the module docstring); default ``hash``.
        doorkeeper: put a Bloom filter in front of the counters (default True).
    """

    __slots__ = (
        "_door",
        "_door_mask",
        "_doorkeeper",
        "_resets",
        "counts",
        "hash_fn",
        "mask",
        "table",
    )

    def __init__(self, *, hash_fn: Callable[[str], int] = hash, doorkeeper: bool = True) -> None:
        self.hash_fn = hash_fn
        """The hash of keys."""
        self._doorkeeper = doorkeeper
        self.table = bytearray(16 * _MIN_SLOTS)
        """The counters, one per byte. Grown and halved in place: it stays the same object."""
        self.mask = len(self.table) - 1
        """``len(table) - 1``: counter indexes are hash bits under this mask."""
        self._door = bytearray(_MIN_SLOTS * _DOOR_BITS // 8 if doorkeeper else 0)
        self._door_mask = _MIN_SLOTS * _DOOR_BITS - 1
        self._resets = 0
        self.counts = [0, 10 * _MIN_SLOTS]
        """``[increments since the last halving, sample size]``, a list that the compiled
        hit path (``shoal._speedups.SketchTouch``) shares."""

    @property
    def sample_size(self) -> int:
        """Increments between two halvings; the owner sets it (10 per cache entry)."""
        return self.counts[1]

    @sample_size.setter
    def sample_size(self, value: int) -> None:
        self.counts[1] = value

    @property
    def _size(self) -> int:
        return self.counts[0]

    @property
    def capacity(self) -> int:
        """The number of entries the table is sized for (a power of two)."""
        return len(self.table) // 16

    def ensure_capacity(self, entries: int) -> None:
        """Grow the table to hold ``entries`` keys at 16 counters each (no-op if it does).

        The table only doubles, keeping every count, so this may be called on every insert.
        """
        if entries <= len(self.table) // 16:
            return
        slots = _ceiling_power_of_two(entries)
        table, door = self.table, self._door
        while len(table) < 16 * slots:
            table.extend(bytes(table))
            if self._doorkeeper:
                door.extend(bytes(door))
        self.mask = len(table) - 1
        self._door_mask = slots * _DOOR_BITS - 1

    def increment(self, key: str) -> None:
        """Count one access of ``key``."""
        h = self.hash_fn(key)
        step = (h >> 40) | 1
        if self._doorkeeper:
            door, door_mask = self._door, self._door_mask
            a = (h >> 7) & door_mask
            b = (a + step) & door_mask
            bit_a, bit_b = 1 << (a & 7), 1 << (b & 7)
            if not (door[a >> 3] & bit_a and door[b >> 3] & bit_b):
                # First sight since the last halving: only the doorkeeper remembers it.
                door[a >> 3] |= bit_a
                door[b >> 3] |= bit_b
                self.count_added()
                return
        table, mask = self.table, self.mask
        # The 4 counters of the key, unrolled: each saturates at 15.
        i = h & mask
        j = (i + step) & mask
        k = (j + step) & mask
        m = (k + step) & mask
        added = False
        if table[i] < _MAX_COUNT:
            table[i] += 1
            added = True
        if table[j] < _MAX_COUNT:
            table[j] += 1
            added = True
        if table[k] < _MAX_COUNT:
            table[k] += 1
            added = True
        if table[m] < _MAX_COUNT:
            table[m] += 1
            added = True
        if added:
            counts = self.counts
            counts[0] += 1
            if counts[0] >= counts[1]:
                self.reset()

    def increment_seen(self, key: str) -> None:
        """Count one more access of ``key``, known to have been seen before (a cache hit).

        The doorkeeper is skipped: its only job is to keep first sights out of the
        counters, and a hit is never one. The estimate comes out as :meth:`increment`'s
        (a doorkeeper bit and a counter step are each worth one).
        """
        h = self.hash_fn(key)
        step = (h >> 40) | 1
        table, mask = self.table, self.mask
        i = h & mask
        j = (i + step) & mask
        k = (j + step) & mask
        m = (k + step) & mask
        added = False
        if table[i] < _MAX_COUNT:
            table[i] += 1
            added = True
        if table[j] < _MAX_COUNT:
            table[j] += 1
            added = True
        if table[k] < _MAX_COUNT:
            table[k] += 1
            added = True
        if table[m] < _MAX_COUNT:
            table[m] += 1
            added = True
        if added:
            self.count_added()

    def count_added(self) -> None:
        """Count one increment that raised a counter; halve everything once a sample is full."""
        counts = self.counts
        counts[0] += 1
        if counts[0] >= counts[1]:
            self.reset()

    def frequency(self, key: str) -> int:
        """The estimated count of ``key`` in recent history (0 to 16)."""
        h = self.hash_fn(key)
        step = (h >> 40) | 1
        table, mask = self.table, self.mask
        i = h & mask
        j = (i + step) & mask
        k = (j + step) & mask
        count = min(table[i], table[j], table[k], table[(k + step) & mask])
        if self._doorkeeper:
            door, door_mask = self._door, self._door_mask
            a = (h >> 7) & door_mask
            b = (a + step) & door_mask
            if door[a >> 3] & (1 << (a & 7)) and door[b >> 3] & (1 << (b & 7)):
                count += 1
        return count

    @property
    def resets(self) -> int:
        """How many times the sketch has halved its counters."""
        return self._resets

    def reset(self) -> None:
        """Age the history: halve every counter and clear the doorkeeper."""
        table = self.table
        # Each counter loses its lowest bit; the 4 counters of a key lose at most 4 together.
        odd = table.translate(_LOW_BIT).count(1)
        table[:] = table.translate(_HALVE)
        self.counts[0] = (self.counts[0] - (odd >> 2)) >> 1
        self._resets += 1
        if self._doorkeeper:
            self._door[:] = bytes(len(self._door))
