"""Store: bounded, thread-safe storage with byte accounting and expiry.

A store wraps an eviction :class:`~shoal.policy.Policy` and adds what the
policy must not know about: a lock (every method is safe from any thread),
the byte and entry bounds, time to live through an injected clock, and
statistics. The cost of an entry is ``len(key) + len(value)``.

Accounting invariant, kept under the lock by every method: ``self._bytes`` is
the sum of the costs of the entries the policy holds, so a replace or a delete
can never leak bytes. Expiry is lazy (an expired entry found by a read is
removed and reported as a miss) plus :meth:`Store.sweep`, which reclaims
expired entries nobody reads, in order of expiry, from a heap.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ConfigError
from .policy import Policy, make_policy
from .stats import StoreStats

__all__ = ["Store", "Clock"]

T = TypeVar("T")

Clock = Callable[[], float]
"""A function returning the current time in seconds (``time.time`` by default)."""


def _none(key: str) -> None:
    return None


class Store:
    """A bounded key → bytes map with TTLs, safe for concurrent use.

    Args:
        capacity_bytes: bound on the total cost of the entries, or None.
        capacity_entries: bound on the number of entries, or None.
        policy: a policy name (``"lru"``, ``"lfu"``, ``"fifo"``, ``"arc"``, ``"tinylfu"``)
            or a fresh :class:`~shoal.policy.Policy`, which is given the bounds.
        clock: time source in seconds; expiry times are on this clock.
        on_expire: called with ``(key, value, expiry)`` for each entry removed because
            it expired (on a read or by a sweep), with the store's lock held: it must
            not call back into this store.

    Raises:
        ConfigError: for a non-positive bound.
    """

    __slots__ = (
        "_bytes",
        "_cap_bytes",
        "_cap_entries",
        "_clock",
        "_evictions",
        "_expirations",
        "_expires",
        "_heap",
        "_hits",
        "_lock",
        "_lookup",
        "_misses",
        "_on_expire",
        "_policy",
        "_touch",
        "get",
    )

    def __init__(
        self,
        *,
        capacity_bytes: int | None = None,
        capacity_entries: int | None = None,
        policy: str | Policy = "lru",
        clock: Clock = time.time,
        on_expire: Callable[[str, bytes, float], object] | None = None,
    ) -> None:
        for name, bound in (
            ("capacity_bytes", capacity_bytes),
            ("capacity_entries", capacity_entries),
        ):
            if bound is not None and bound <= 0:
                raise ConfigError(f"{name} must be positive, got {bound}")
        if isinstance(policy, str):
            self._policy: Policy = make_policy(
                policy, capacity_entries=capacity_entries, capacity_bytes=capacity_bytes
            )
        else:
            if len(policy):
                raise ConfigError("a store needs an empty policy")
            # Policies that size regions of their own (arc, tinylfu) need the bounds.
            policy.set_capacity(capacity_entries=capacity_entries, capacity_bytes=capacity_bytes)
            self._policy = policy
        # Bound once: for LRU these are C methods, so a hit runs no Python policy code.
        self._lookup = self._policy.lookup
        self._touch = self._policy.touch
        self._cap_bytes = capacity_bytes
        self._cap_entries = capacity_entries
        self._clock = clock
        self._on_expire = on_expire
        self._lock = threading.Lock()
        self._bytes = 0
        # key -> absolute expiry, only for entries that have one; the heap holds
        # (expiry, key) pairs, some stale after a replace or delete (checked on pop).
        self._expires: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0
        self.get: Callable[[str], bytes | None] = self.reader(_none)
        """``get(key)``: the live value of ``key``, recording the access, or None.

        An entry found expired is removed (its bytes reclaimed) and counts as a miss."""

    # -- reads ---------------------------------------------------------------

    def reader(
        self, on_miss: Callable[[str], T], on_hit: Callable[[bytes], Any] | None = None
    ) -> Callable[[str], Any]:
        """Build a lookup function with the miss and hit handling fused in.

        The function returned behaves like :meth:`get` but calls ``on_miss(key)``
        (outside the lock) instead of returning None, and returns ``on_hit(value)``
        instead of the value when ``on_hit`` is given. It exists for speed: a
        caller's whole hit path is then one Python call (this is how
        :mod:`shoal.sync` answers a hit as fast as a dict behind a lock).
        """
        lock, lookup, touch, expires = self._lock, self._lookup, self._touch, self._expires
        store = self

        def read(key: str) -> Any:
            with lock:
                value = lookup(key)
                if value is not None and (not expires or store._alive(key)):
                    touch(key)
                    store._hits += 1
                else:
                    store._misses += 1
                    value = None
            if value is None:
                return on_miss(key)
            return value if on_hit is None else on_hit(value)

        return read

    def peek(self, key: str) -> bytes | None:
        """Return the live value of ``key`` without recording an access or a get."""
        with self._lock:
            value = self._lookup(key)
            if value is None:
                return None
            expiry = self._expires.get(key)
            if expiry is not None and expiry <= self._clock():
                return None
            return value

    def expiry(self, key: str) -> float | None:
        """Absolute expiry time of ``key`` on the store's clock, or None (no TTL or absent)."""
        # One dict lookup is atomic: no lock needed (and none taken on the peer hit path).
        return self._expires.get(key)

    def __contains__(self, key: object) -> bool:
        """Whether a live entry for ``key`` is held (records nothing)."""
        return isinstance(key, str) and self.peek(key) is not None

    def __len__(self) -> int:
        """Entries held, expired ones not yet reclaimed included."""
        return len(self._policy)

    @property
    def nbytes(self) -> int:
        """Total cost of the entries held."""
        return self._bytes

    # -- writes --------------------------------------------------------------

    def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        expires_at: float | None = None,
    ) -> bool:
        """Insert or replace ``key``, then evict until both bounds hold.

        Args:
            key: the key.
            value: the value bytes.
            ttl: seconds from now until the entry expires.
            expires_at: absolute expiry on the store's clock (wins over ``ttl``).

        Returns:
            False if the entry alone exceeds ``capacity_bytes``: it is not stored,
            and any older value of ``key`` is removed so it cannot be served stale.
            True otherwise, even when an admission policy (``tinylfu``) evicts the
            new entry at once in favour of more frequently used ones.
        """
        cost = len(key) + len(value)
        if expires_at is None and ttl is not None:
            expires_at = self._clock() + ttl
        with self._lock:
            cap_bytes = self._cap_bytes
            if cap_bytes is not None and cost > cap_bytes:
                self._discard(key)
                return False
            old = self._policy.put(key, value, cost)
            if old is not None:
                self._bytes -= len(key) + len(old)
            self._bytes += cost
            if expires_at is None:
                if self._expires:
                    self._expires.pop(key, None)
            else:
                self._expires[key] = expires_at
                heapq.heappush(self._heap, (expires_at, key))
            self._evict_over_bounds()
            return True

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether an entry (even an expired one) was held."""
        with self._lock:
            return self._discard(key)

    def clear(self) -> None:
        """Remove every entry (statistics are kept)."""
        with self._lock:
            self._policy.clear()
            self._expires.clear()
            self._heap.clear()
            self._bytes = 0

    def sweep(self, limit: int | None = None) -> int:
        """Remove entries whose expiry has passed, earliest first.

        Args:
            limit: stop after this many removals (keeps one sweep's lock hold short).

        Returns:
            The number of expired entries removed.
        """
        removed = 0
        with self._lock:
            now = self._clock()
            heap, expires = self._heap, self._expires
            while heap and heap[0][0] <= now and (limit is None or removed < limit):
                expiry, key = heapq.heappop(heap)
                if expires.get(key) == expiry:  # not replaced or deleted since it was pushed
                    self._expire(key, expiry)
                    removed += 1
            # Replaced and deleted entries leave stale heap items; rebuild when they dominate.
            if len(heap) > 2 * len(expires) + 64:
                self._heap = [(e, k) for k, e in expires.items()]
                heapq.heapify(self._heap)
        return removed

    def statistics(self) -> StoreStats:
        """A consistent snapshot of sizes and counters."""
        with self._lock:
            return StoreStats(
                bytes=self._bytes,
                items=len(self._policy),
                gets=self._hits + self._misses,
                hits=self._hits,
                evictions=self._evictions,
                expirations=self._expirations,
                capacity_bytes=self._cap_bytes,
                capacity_entries=self._cap_entries,
            )

    # -- internals (called with the lock held) -------------------------------

    def _alive(self, key: str) -> bool:
        """Whether held ``key`` has not expired; an expired one is removed."""
        expiry = self._expires.get(key)
        if expiry is None or expiry > self._clock():
            return True
        self._expire(key, expiry)
        return False

    def _expire(self, key: str, expiry: float) -> None:
        old = self._policy.remove(key)
        if old is None:
            return
        self._bytes -= len(key) + len(old)
        self._expires.pop(key, None)
        self._expirations += 1
        if self._on_expire is not None:
            self._on_expire(key, old, expiry)

    def _discard(self, key: str) -> bool:
        old = self._policy.remove(key)
        if old is None:
            return False
        self._bytes -= len(key) + len(old)
        if self._expires:
            self._expires.pop(key, None)
        return True

    def _evict_over_bounds(self) -> None:
        cap_bytes, cap_entries, policy = self._cap_bytes, self._cap_entries, self._policy
        while (cap_bytes is not None and self._bytes > cap_bytes) or (
            cap_entries is not None and len(policy) > cap_entries
        ):
            key, value = policy.evict()
            self._bytes -= len(key) + len(value)
            if self._expires:
                self._expires.pop(key, None)
            self._evictions += 1
