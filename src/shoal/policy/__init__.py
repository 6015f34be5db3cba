"""Eviction policies: which entry leaves when a store is full.

A policy is an ordered map from keys to values that also picks victims. It is
pure and synchronous: no locks, no clocks, no I/O, and it is **not** safe for
concurrent use; :class:`~shoal.store.Store` owns locking, byte accounting and
expiry, and calls the policy under its lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from ..errors import ConfigError
from .lru import LRUPolicy

__all__ = ["Policy", "LRUPolicy", "make_policy"]


class Policy(Protocol):
    """The contract every eviction policy meets.

    Reads are split in two so that a store's hit path can call C-level
    functions directly where a policy allows it (for LRU, ``dict.get`` and
    ``OrderedDict.move_to_end``): :attr:`lookup` reads without recording
    anything, :attr:`touch` records an access of a key known to be held.

    ``cost`` is the entry's size in the store's unit (key length plus value
    length); policies that weigh entries by size use it, others ignore it.
    """

    @property
    def lookup(self) -> Callable[[str], bytes | None]:
        """``lookup(key)``: the value, or None if absent; records no access."""
        ...

    @property
    def touch(self) -> Callable[[str], None]:
        """``touch(key)``: record an access of ``key``, which must be held."""
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


def make_policy(name: str) -> Policy:
    """Build a new, empty policy by name (``lru``).

    Raises:
        ConfigError: for an unknown name.
    """
    if name == "lru":
        return LRUPolicy()
    raise ConfigError(f"unknown eviction policy {name!r}")
