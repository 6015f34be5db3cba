"""This node's copy of a group: its four stores, and what changes them all at once.

A group keeps, in :class:`~shoal.store.Store` objects of its budget: ``main``
(the keys this node owns, or every key of a replicated group), ``hot`` (copies
of keys other members own), ``negative`` (keys the loader said do not exist,
for ``negative_ttl``) and, with ``stale_while_revalidate``, ``stale`` (expired
values in their grace period). :class:`LocalStores` builds them and makes the
changes that concern every store and the group's loads in flight.

Rules: ``hot_fraction`` of the budget goes to the copies (hot, negative and
stale each get that share), the rest to ``main``, which a replicated group
leaves unbounded; a value stored or dropped here fences the key's loads in
flight (their result reaches their waiters but is not cached); nothing here
awaits, and the lookups of the read path stay the group's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .config import GroupConfig
from .errors import NotFound
from .singleflight import Flight
from .store import Clock, Store

__all__ = ["LocalStores"]


class LocalStores:
    """A group's main, hot, negative and stale stores (see the module docstring).

    Args:
        config: the group's settings (budget, policy, mode, grace period).
        clock: time source for TTLs.
        flights: the group's flights, fenced by every change made here.
    """

    __slots__ = ("_flights", "hot", "keeps_negative", "listener", "main", "negative", "stale")

    def __init__(self, config: GroupConfig, clock: Clock, flights: Iterable[Flight[bytes]]) -> None:
        self._flights = tuple(flights)
        self.listener: Callable[[str | None], object] | None = None
        """Told of every change made here: the key, or None for all of them (the
        node's :class:`~shoal._changes.ChangeLog`, which near caches follow)."""
        main_bytes, hot_bytes = _split(config.capacity_bytes, config.hot_fraction)
        main_entries, hot_entries = _split(config.capacity_entries, config.hot_fraction)
        if config.mode == "replicated":
            # Every member holds every key: the main cache mirrors the replicated
            # state and never evicts (capacity bounds the writes instead).
            main_bytes = main_entries = None
        # With stale_while_revalidate, values that expire move to a store of their
        # own for the grace period; the hit path is untouched.
        grace = config.stale_while_revalidate
        self.stale: Store | None = None
        on_expire: Callable[[str, bytes, float], object] | None = None
        if grace is not None:
            stale = self.stale = Store(
                capacity_bytes=hot_bytes, capacity_entries=hot_entries, clock=clock
            )

            def on_expire(key: str, value: bytes, expiry: float) -> None:
                stale.set(key, value, expires_at=expiry + grace)

        self.main = Store(
            capacity_bytes=main_bytes,
            capacity_entries=main_entries,
            policy=config.policy,
            clock=clock,
            on_expire=on_expire,
        )
        self.hot = Store(
            capacity_bytes=hot_bytes,
            capacity_entries=hot_entries,
            policy=config.policy,
            clock=clock,
            on_expire=on_expire,
        )
        # Keys the loader said do not exist (kept for ``negative_ttl``); apart from the
        # main cache, so a main-cache hit never needs a check for a negative entry.
        self.negative = Store(capacity_bytes=hot_bytes, capacity_entries=hot_entries, clock=clock)
        # Without negative_ttl nothing enters negative: a miss skips looking there.
        self.keeps_negative = config.negative_ttl is not None

    def recheck(self, key: str) -> bytes | None:
        """The value a load that finished meanwhile cached, or None (not counted as a get).

        Raises:
            NotFound: the key is cached as missing.
        """
        # Singleflight only merges calls that overlap; a flight that finished between
        # a caller's miss and its joining has already cached the value.
        data = self.main.peek(key)
        if data is None:
            data = self.hot.peek(key)
        if data is None and self.keeps_negative and self.negative.peek(key) is not None:
            raise NotFound(key)
        return data

    def store(self, key: str, data: bytes, expires_at: float | None) -> None:
        """Make ``data`` this node's value of ``key``; fence loads in flight."""
        for flight in self._flights:
            flight.fence(key)
        self.hot.delete(key)
        self.negative.delete(key)
        if self.stale is not None:
            self.stale.delete(key)
        self.main.set(key, data, expires_at=expires_at)
        if self.listener is not None:
            self.listener(key)

    def drop(self, keys: Iterable[str]) -> int:
        """Remove keys from every store, fencing loads; count those it had."""
        removed = 0
        for key in keys:
            fenced = False
            for flight in self._flights:
                fenced |= flight.fence(key)
            in_main = self.main.delete(key)
            in_hot = self.hot.delete(key)
            in_negative = self.negative.delete(key)
            if self.stale is not None:
                self.stale.delete(key)
            removed += in_main or in_hot or in_negative or fenced
            if self.listener is not None:
                # Even a key this node did not hold: a near cache may hold it
                # (read from its owner), and this is how this node hears of it.
                self.listener(key)
        return removed

    def clear(self) -> int:
        """Empty every store and fence every load in flight; how many keys main and
        hot had."""
        removed = len(self.main) + len(self.hot)
        self.fence_all()
        for store in (self.main, self.hot, self.negative, self.stale):
            if store is not None:
                store.clear()
        if self.listener is not None:
            self.listener(None)
        return removed

    def fence_all(self) -> None:
        """Fence every load in flight (see :meth:`~shoal.singleflight.Flight.fence`)."""
        for flight in self._flights:
            flight.fence_all()

    def sweep(self) -> int:
        """Reclaim expired entries in every store; return how many were removed."""
        stores = (self.main, self.hot, self.negative, self.stale)
        return sum(s.sweep(limit=10_000) for s in stores if s is not None)


def _split(bound: int | None, fraction: float) -> tuple[int | None, int | None]:
    """Split a bound into the main cache's and the hot cache's shares."""
    if bound is None:
        return None, None
    hot = max(1, int(bound * fraction))
    return max(1, bound - hot), hot
