"""Last-writer-wins state of one replicated group, with digests (sans I/O).

In a replicated group every node holds every key. Each write (a set or a delete)
carries a :class:`Version`: the writer's hybrid logical clock timestamp
(:mod:`shoal.hlc`) and its node id, which breaks ties, so all versions are
totally ordered and one version names exactly one write. Every node keeps, per
key, the :class:`Entry` with the highest version it has seen; a delete is kept
as a tombstone (an entry without a value) so that it beats the older writes
that may still arrive. Applying any set of writes in any order, any number of
times, therefore leaves every node in the same state.

Rules (what :meth:`ReplicaState.apply` and :meth:`ReplicaState.clear` keep):

* **Last writer wins.** An entry replaces the stored one only if its version is
  greater; an equal version is the same write again and changes nothing.
* **Group-wide clear.** :meth:`~ReplicaState.clear` invalidates the whole
  group at a version: entries at or below it are dropped, and writes at or
  below it are refused from then on. Every stored entry is above ``cleared``.
* **Horizon.** Tombstones and expired values are kept only for a while: an
  entry dead since before the *horizon* (the caller's ``now`` minus its
  tombstone-keeping time) is not stored and is dropped by
  :meth:`~ReplicaState.collect_garbage`. It still beats an older stored entry,
  which is removed. The horizon must exceed the time any write can spend in
  flight (or the time a partition lasts), or a deleted key can come back from
  a node that never saw the delete.

Anti-entropy compares states cheaply. Keys fall into ``buckets`` by
``xxh3_64(key) % buckets``, the same on every node; each entry hashes by its key
and version only (one version names one write, so the value adds nothing), and
each bucket's digest is the XOR of its entries' hashes; :meth:`~ReplicaState.root`
is the XOR of all of them. The digests are kept up to date on every change, at
O(1) per change. A sync round between nodes A and B:

1. Exchange ``cleared`` versions and :meth:`~ReplicaState.clear` each with the
   other's (digests do not cover it).
2. A sends :meth:`~ReplicaState.root` and, if B's differs,
   :meth:`~ReplicaState.bucket_hashes`; B finds the
   :meth:`~ReplicaState.differing` buckets and sends their
   :meth:`~ReplicaState.summaries` (keys and versions).
3. A calls :meth:`~ReplicaState.compare`: it sends B the entries B lacks or
   holds older, and asks B for the keys B holds newer; both sides
   :meth:`~ReplicaState.apply` what they receive.

A :class:`ReplicaState` holds metadata and values but does no I/O, reads no
clock (callers pass ``now`` and ``horizon``) and holds no lock: it is not safe
for concurrent use from several threads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import xxhash

from .errors import ConfigError
from .hlc import HLC_MAX, hlc_seconds

__all__ = [
    "Version",
    "ZERO_VERSION",
    "Entry",
    "DEFAULT_BUCKETS",
    "ReplicaState",
    "merge_all",
]

_xxh3: Final = xxhash.xxh3_64_intdigest
# The physical part of an HLC timestamp starts at this bit (see shoal.hlc).
_HLC_COUNTER_BITS: Final = 16

DEFAULT_BUCKETS: Final = 1024
"""Digest buckets per group when not given: small enough to send as one message
(8 KiB of hashes), fine enough that one sync round ships few unchanged keys."""


@dataclass(frozen=True, slots=True, order=True)
class Version:
    """The version of one write: its HLC timestamp, then the writer's node id.

    Versions compare by ``hlc`` first and by ``node`` (as str) on a tie, so
    two writes never compare equal unless they are the same write.
    """

    hlc: int
    """The writer's hybrid logical clock timestamp, an unsigned 64-bit int."""
    node: str
    """The writer's node id."""


ZERO_VERSION: Final = Version(0, "")
"""The version below every write: the initial ``cleared`` version."""


@dataclass(frozen=True, slots=True)
class Entry:
    """The latest known write of one key: a value, or a tombstone.

    Args:
        key: the key.
        version: the write's version.
        value: the value, or None for a tombstone (the key was deleted).
        expires_at: absolute expiry in Unix seconds, or None for never.
    """

    key: str
    version: Version
    value: bytes | None
    expires_at: float | None = None

    def dead(self, now: float) -> bool:
        """Whether the entry holds no usable value at Unix time ``now``.

        Args:
            now: the current Unix time, in seconds.

        Returns:
            True for a tombstone, or for a value whose ``expires_at <= now``.
        """
        if self.value is None:
            return True
        expires_at = self.expires_at
        return expires_at is not None and expires_at <= now

    def dead_since(self) -> float | None:
        """The Unix time from which the entry is (or will be) dead.

        Returns:
            For a tombstone, the time of the delete (the physical part of its
            version's timestamp); for a value with an expiry, ``expires_at``;
            for a value without one, None.

        Raises:
            ValueError: a tombstone's timestamp is not an unsigned 64-bit int.
        """
        if self.value is None:
            return hlc_seconds(self.version.hlc)
        return self.expires_at


class ReplicaState:
    """The replicated state of one group: key to latest :class:`Entry`, a
    group-wide ``cleared`` version, and digests kept up to date incrementally.

    See the module documentation for the merge rules and the sync protocol.

    Args:
        buckets: the number of digest buckets; every node of a group must use
            the same number.

    Raises:
        ConfigError: ``buckets`` is not an int >= 1.
    """

    __slots__ = (
        "_bucket_hashes",
        "_buckets",
        "_cleared",
        "_entries",
        "_members",
        "_nbytes",
        "_root",
    )

    _entries: dict[str, Entry]
    _members: list[dict[str, int]]
    """Per bucket: each of its keys, mapped to the hash of the key's entry."""
    _bucket_hashes: list[int]
    """Per bucket: the XOR of the hashes in ``_members``."""
    _root: int
    _buckets: int
    _cleared: Version
    _nbytes: int

    def __init__(self, *, buckets: int = DEFAULT_BUCKETS) -> None:
        if not isinstance(buckets, int) or isinstance(buckets, bool) or buckets < 1:
            raise ConfigError(f"buckets must be an int >= 1, not {buckets!r}")
        self._buckets = buckets
        self._entries = {}
        self._members = [{} for _ in range(buckets)]
        self._bucket_hashes = [0] * buckets
        self._root = 0
        self._cleared = ZERO_VERSION
        self._nbytes = 0

    @property
    def buckets(self) -> int:
        """The number of digest buckets."""
        return self._buckets

    @property
    def cleared(self) -> Version:
        """The version of the latest group-wide clear (:data:`ZERO_VERSION` before any)."""
        return self._cleared

    @property
    def nbytes(self) -> int:
        """The bytes of keys (UTF-8) and values of the entries that hold a value.

        Tombstones count nothing; expired values count until they are dropped.
        """
        return self._nbytes

    def __len__(self) -> int:
        """The number of entries, tombstones included."""
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` has an entry (a value or a tombstone)."""
        return key in self._entries

    def get(self, key: str) -> Entry | None:
        """The entry of ``key`` (a value or a tombstone), or None if there is none."""
        return self._entries.get(key)

    def entries(self) -> Iterator[Entry]:
        """Iterate over every entry, tombstones included.

        The state must not change while the iterator is in use.
        """
        return iter(self._entries.values())

    def bucket_of(self, key: str) -> int:
        """The digest bucket of ``key``: ``xxh3_64(key as UTF-8) % buckets``."""
        return _xxh3(key.encode()) % self._buckets

    def root(self) -> int:
        """The digest of the whole state: the XOR of every entry's hash (0 when empty).

        Two states with the same entries (by key and version) have the same root.
        """
        return self._root

    def bucket_hashes(self) -> list[int]:
        """The digest of each bucket, a new list of ``buckets`` unsigned 64-bit ints."""
        return self._bucket_hashes.copy()

    def apply(self, entry: Entry, *, horizon: float) -> bool:
        """Merge one write, last writer wins.

        The entry is stored if its version is above ``cleared`` and above the
        stored entry's version (or there is none). If it is dead since before
        ``horizon`` (a tombstone or an expired value old enough to forget), it
        is not stored, but a stored entry it beats is still removed.

        Args:
            entry: the write.
            horizon: Unix time before which dead entries are forgotten
                (``now`` minus the tombstone-keeping time; ``-inf`` keeps all).

        Returns:
            True if the state changed (the entry was stored, or the entry it
            beat was removed); the caller then updates its value store. False
            for a write that lost or was seen before.

        Raises:
            ValueError: the entry would change the state, but its version's
                timestamp does not fit in 64 bits; the state is left unchanged.
                (A negative timestamp is below :data:`ZERO_VERSION` and loses.)
        """
        key = entry.key
        version = entry.version
        hlc = version.hlc
        node = version.node
        entries = self._entries
        old = entries.get(key)
        if old is not None:
            old_version = old.version
            old_hlc = old_version.hlc
            if hlc < old_hlc or (hlc == old_hlc and node <= old_version.node):
                return False
        cleared = self._cleared
        if hlc < cleared.hlc or (hlc == cleared.hlc and node <= cleared.node):
            return False
        value = entry.value
        if value is None:
            # Entry.dead_since() inlined: the physical part of the timestamp, in seconds.
            stale = (hlc >> _HLC_COUNTER_BITS) / 1000 < horizon
        else:
            expires_at = entry.expires_at
            stale = expires_at is not None and expires_at < horizon
        if stale and old is None:
            return False
        if hlc > HLC_MAX:  # (a negative one lost to ZERO_VERSION above)
            raise ValueError(f"{version!r}: hlc must be an unsigned 64-bit int")
        key_bytes = key.encode()
        bucket = _xxh3(key_bytes) % self._buckets
        members = self._members[bucket]
        if stale:
            change = members.pop(key)
            del entries[key]
        else:
            entry_hash = _xxh3(key_bytes + b"\0" + hlc.to_bytes(8, "big") + node.encode())
            change = entry_hash ^ members.get(key, 0)
            members[key] = entry_hash
            entries[key] = entry
            if value is not None:
                self._nbytes += len(key_bytes) + len(value)
        if old is not None and old.value is not None:
            self._nbytes -= len(key_bytes) + len(old.value)
        self._bucket_hashes[bucket] ^= change
        self._root ^= change
        return True

    def clear(self, version: Version) -> list[str]:
        """Invalidate the whole group at ``version``.

        If ``version`` is above ``cleared``, it becomes ``cleared``, and every
        entry at or below it is dropped (writes at or below it are refused
        from then on). Otherwise nothing changes.

        Args:
            version: the version of the clear.

        Returns:
            The keys of the dropped entries that held a value (the caller drops
            those values); ``[]`` when nothing changed.
        """
        if version <= self._cleared:
            return []
        self._cleared = version
        doomed = [entry for entry in self._entries.values() if entry.version <= version]
        self._remove(doomed)
        return [entry.key for entry in doomed if entry.value is not None]

    def collect_garbage(self, horizon: float) -> list[str]:
        """Drop the entries dead since before ``horizon``.

        Tombstones whose delete is older than ``horizon`` and values whose
        ``expires_at`` is before it are forgotten; a write they beat can no
        longer arrive (see the module documentation).

        Args:
            horizon: Unix time before which dead entries are forgotten.

        Returns:
            The keys of the dropped entries.
        """
        doomed = []
        for entry in self._entries.values():
            since = entry.dead_since()
            if since is not None and since < horizon:
                doomed.append(entry)
        self._remove(doomed)
        return [entry.key for entry in doomed]

    def expired(self, now: float) -> list[str]:
        """The keys of the values that have expired by ``now``.

        The entries stay (their versions still beat older writes); the caller
        may drop the values. Tombstones are not listed.

        Args:
            now: the current Unix time, in seconds.

        Returns:
            The keys of the entries holding a value whose ``expires_at <= now``.
        """
        return [
            entry.key
            for entry in self._entries.values()
            if entry.value is not None and entry.expires_at is not None and entry.expires_at <= now
        ]

    def differing(self, hashes: Sequence[int]) -> list[int]:
        """The buckets whose digest differs from another state's.

        Args:
            hashes: the other state's :meth:`bucket_hashes`.

        Returns:
            The indexes of the differing buckets, ascending.

        Raises:
            ValueError: ``hashes`` does not hold exactly ``buckets`` digests.
        """
        if len(hashes) != self._buckets:
            raise ValueError(f"expected {self._buckets} bucket hashes, got {len(hashes)}")
        return [
            index
            for index, (mine, theirs) in enumerate(zip(self._bucket_hashes, hashes, strict=True))
            if mine != theirs
        ]

    def summaries(self, buckets: Iterable[int]) -> list[tuple[str, Version]]:
        """The keys and versions of the entries in ``buckets``, tombstones included.

        Args:
            buckets: bucket indexes; a repeated index counts once.

        Returns:
            ``(key, version)`` for every entry in those buckets.

        Raises:
            ValueError: an index is not an int in ``[0, buckets)``.
        """
        entries = self._entries
        return [
            (key, entries[key].version)
            for bucket in self._checked(buckets)
            for key in self._members[bucket]
        ]

    def compare(
        self, buckets: Iterable[int], theirs: Iterable[tuple[str, Version]]
    ) -> tuple[list[Entry], list[str]]:
        """Compare ``buckets`` with another state's :meth:`summaries` of them.

        Args:
            buckets: the bucket indexes the summaries cover.
            theirs: the other state's ``(key, version)`` pairs for those buckets.

        Returns:
            ``(send, want)``: ``send`` holds this state's entries in ``buckets``
            that the other state lacks or holds at a lower version; ``want``
            holds the keys the other state holds at a higher version than this
            one (or that this one lacks), leaving out versions at or below
            ``cleared``, which :meth:`apply` would refuse.

        Raises:
            ValueError: a bucket index is not an int in ``[0, buckets)``.
        """
        indexes = self._checked(buckets)
        their_versions: dict[str, Version] = {}
        for key, version in theirs:
            known = their_versions.get(key)
            if known is None or version > known:
                their_versions[key] = version
        entries = self._entries
        send = []
        for bucket in indexes:
            for key in self._members[bucket]:
                mine = entries[key]
                their_version = their_versions.get(key)
                if their_version is None or mine.version > their_version:
                    send.append(mine)
        cleared = self._cleared
        want = []
        for key, their_version in their_versions.items():
            if their_version <= cleared:
                continue
            mine_or_none = entries.get(key)
            if mine_or_none is None or their_version > mine_or_none.version:
                want.append(key)
        return send, want

    def _checked(self, buckets: Iterable[int]) -> list[int]:
        """``buckets`` without repeats, each checked to be a bucket index."""
        indexes = list(dict.fromkeys(buckets))
        size = self._buckets
        for index in indexes:
            if not isinstance(index, int) or not 0 <= index < size:
                raise ValueError(f"bucket index {index!r} is not an int in [0, {size})")
        return indexes

    def _remove(self, doomed: list[Entry]) -> None:
        """Remove ``doomed`` (stored entries) and their hashes from the digests."""
        entries = self._entries
        members = self._members
        bucket_hashes = self._bucket_hashes
        size = self._buckets
        root = self._root
        nbytes = self._nbytes
        for entry in doomed:
            key = entry.key
            key_bytes = key.encode()
            bucket = _xxh3(key_bytes) % size
            entry_hash = members[bucket].pop(key)
            del entries[key]
            bucket_hashes[bucket] ^= entry_hash
            root ^= entry_hash
            if entry.value is not None:
                nbytes -= len(key_bytes) + len(entry.value)
        self._root = root
        self._nbytes = nbytes

    def __repr__(self) -> str:
        return (
            f"ReplicaState(entries={len(self._entries)}, buckets={self._buckets}, "
            f"cleared={self._cleared!r}, root={self._root:#018x})"
        )


def merge_all(
    entries: Iterable[Entry],
    *,
    buckets: int = DEFAULT_BUCKETS,
    horizon: float = float("-inf"),
) -> ReplicaState:
    """Build a state by applying every entry, in order, to a new :class:`ReplicaState`.

    Args:
        entries: the writes.
        buckets: the number of digest buckets.
        horizon: Unix time before which dead entries are forgotten (``-inf``,
            the default, keeps every tombstone).

    Returns:
        The merged state; whatever the order of ``entries``, it holds the same
        entries (with the default horizon).

    Raises:
        ConfigError: ``buckets`` is not an int >= 1.
        ValueError: an entry that would change the state has a version
            timestamp that does not fit in 64 bits.
    """
    state = ReplicaState(buckets=buckets)
    apply = state.apply
    for entry in entries:
        apply(entry, horizon=horizon)
    return state
