"""Eviction policies: which entry leaves when a store is full.

A policy is an ordered map from keys to values that also picks victims. It is
pure and synchronous: no locks, no clocks, no I/O, and it is **not** safe for
concurrent use; :class:`~shoal.store.Store` owns locking, byte accounting and
expiry, and calls the policy under its lock.

The store drives eviction: it calls :meth:`Policy.put` for a write, then
:meth:`Policy.evict` for as long as either of its bounds is exceeded. A policy
never evicts on its own. An admission policy (``tinylfu``) refuses a newcomer
by returning it from :meth:`Policy.evict`. Entries whose TTL ran out are taken
out by the store with :meth:`Policy.remove`, like deletes.

Policies (see each module):

=========== ===================================================================
``lru``     least recently used (the default)
``lfu``     least frequently used, O(1) frequency buckets with dynamic aging
``fifo``    first in, first out: reads change nothing
``arc``     Adaptive Replacement Cache (Megiddo & Modha)
``tinylfu`` W-TinyLFU as in Caffeine: window LRU, segmented main, frequency
            sketch admission, hill-climbing window
=========== ===================================================================
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Final, Protocol

from ..errors import ConfigError
from .arc import ARCPolicy
from .fifo import FIFOPolicy
from .lfu import LFUPolicy
from .lru import LRUPolicy
from .tinylfu import TinyLFUPolicy

__all__ = [
    "Policy",
    "POLICY_NAMES",
    "make_policy",
    "LRUPolicy",
    "LFUPolicy",
    "FIFOPolicy",
    "ARCPolicy",
    "TinyLFUPolicy",
]

POLICY_NAMES: Final = ("lru", "lfu", "fifo", "arc", "tinylfu")
"""The names :func:`make_policy` accepts."""


class Policy(Protocol):
    """The contract every eviction policy meets.

    Reads are split in two so that a store's hit path can call C-level
    functions directly where a policy allows it (for LRU, ``dict.get`` and
    ``OrderedDict.move_to_end``): :attr:`lookup` reads without recording
    anything, :attr:`touch` records an access of a key known to be held.

    ``cost`` is the entry's size in the store's unit (key length plus value
    length). Policies that size regions of their own (ARC, W-TinyLFU) weigh
    entries by it against the bounds given to :meth:`set_capacity`; the others
    ignore both.
    """

    @property
    def lookup(self) -> Callable[[str], bytes | None]:
        """``lookup(key)``: the value, or None if absent; records no access."""
        ...

    @property
    def touch(self) -> Callable[[str], None]:
        """``touch(key)``: record an access of ``key``, which must be held."""
        ...

    def set_capacity(self, *, capacity_entries: int | None, capacity_bytes: int | None) -> None:
        """Tell the policy the bounds its store enforces (called once, while empty).

        Raises:
            ConfigError: for a bound that is not a positive number, or if the
                policy already holds entries.
        """
        ...

    def put(self, key: str, value: bytes, cost: int) -> bytes | None:
        """Insert or replace ``key``; return the replaced value, or None if the key is new."""
        ...

    def remove(self, key: str) -> bytes | None:
        """Remove ``key``; return its value, or None if absent."""
        ...

    def evict(self) -> tuple[str, bytes]:
        """Remove and return the entry the policy chooses to lose.

        Raises:
            KeyError: if the policy holds no entry.
        """
        ...

    def clear(self) -> None:
        """Remove every entry."""
        ...

    def keys(self) -> Iterator[str]:
        """Iterate over the keys held (order unspecified)."""
        ...

    def __len__(self) -> int:
        """Number of entries held."""
        ...

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is held (records no access)."""
        ...


def make_policy(
    name: str,
    *,
    capacity_entries: int | None = None,
    capacity_bytes: int | None = None,
    rng: random.Random | None = None,
) -> Policy:
    """Build a new, empty policy by name, sized for a store's bounds.

    Args:
        name: one of :data:`POLICY_NAMES`.
        capacity_entries: the store's bound on the number of entries, or None.
        capacity_bytes: the store's bound on the total cost, or None.
        rng: randomness for the policies that use it (``tinylfu``); default: a
            generator seeded from the system.

    Raises:
        ConfigError: for an unknown name or a bound that is not a positive number.
    """
    policy: Policy
    if name == "lru":
        policy = LRUPolicy()
    elif name == "lfu":
        policy = LFUPolicy()
    elif name == "fifo":
        policy = FIFOPolicy()
    elif name == "arc":
        policy = ARCPolicy()
    elif name == "tinylfu":
        policy = TinyLFUPolicy(rng=rng)
    else:
        raise ConfigError(f"unknown eviction policy {name!r}; choose one of {POLICY_NAMES}")
    policy.set_capacity(capacity_entries=capacity_entries, capacity_bytes=capacity_bytes)
    return policy
