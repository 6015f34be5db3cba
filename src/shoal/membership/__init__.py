"""Membership: where a node's member list comes from, as a stream of snapshots.

Three interchangeable sources sit behind one Protocol, :class:`Membership`:

- ``static`` (:mod:`.static`): the list from the configuration; never changes.
- ``etcd`` (:mod:`.etcd`): each node registers a key under a lease it keeps
  alive and watches the cluster's prefix (extra ``shoal[etcd]``).
- ``gossip`` (:mod:`.gossip`): SWIM failure detection and dissemination over
  UDP, started from one or a few bootstrap addresses; no dependency.

A source publishes *snapshots*: the whole set of live :class:`Member` objects,
never deltas. A consumer that falls behind skips intermediate snapshots and
sees the latest one (membership is state, not a log). The node owns the
source's lifecycle::

    first = await membership.start()        # register / join; the first view
    tg.create_task(membership.run())        # keep-alives, watches, probes
    async for members in membership.snapshots():
        node.set_peers(...)                 # new ring + clients, one swap
    ...
    await membership.aclose()               # deregister / leave, at once

Rules: :meth:`Membership.run` is the only long-running coroutine and is owned
(and cancelled) by the caller's task group; a source starts no task of its own
that outlives it. A source that loses its backend (etcd down, no packets) keeps
publishing nothing new: the node serves with its last view.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from ..config import check_node_id, default_node_id

__all__ = [
    "Member",
    "MemberSet",
    "Membership",
    "SnapshotChannel",
    "SOURCES",
    "default_node_id",
    "check_node_id",
]

SOURCES: Final = ("static", "etcd", "gossip")
"""The membership sources a node can use."""


@dataclass(frozen=True, slots=True)
class Member:
    """One live member of the cluster, as a membership source reports it."""

    node_id: str
    """Stable identity of the node (``--node-id``; default derived from its URL)."""
    url: str
    """Its URL on the ring: where peers fetch keys from it."""
    source: str
    """Where this node learned of it: ``static``, ``etcd`` or ``gossip``."""
    grpc: str | None = None
    """Its gRPC address, when it advertises one."""
    started_at: float | None = None
    """When its process started (Unix seconds), when the source carries it."""
    gossip: str | None = None
    """Its gossip address ``host:port`` (gossip members only)."""


MemberSet = frozenset[Member]
"""A snapshot: every live member, this node included when the source knows it."""


@runtime_checkable
class Membership(Protocol):
    """A source of member-set snapshots (static list, etcd, gossip)."""

    source: str
    """``static``, ``etcd`` or ``gossip``."""

    async def start(self) -> MemberSet:
        """Register or join, and return the first view.

        Never fails because the backend is unreachable: the view is then this
        node alone (or the configured list) and :meth:`run` keeps trying.
        """
        ...

    async def run(self) -> None:
        """The source's background work (keep-alives, watches, probes) until cancelled."""
        ...

    def snapshots(self) -> AsyncIterator[MemberSet]:
        """The current view, then every view that differs from the last one yielded."""
        ...

    def statistics(self) -> dict[str, Any]:
        """Plain data about the source's state and traffic (for ``GET /v1/cluster``)."""
        ...

    async def aclose(self) -> None:
        """Leave the cluster at once (deregister, announce the leave) and release
        resources. Idempotent; bounded in time even when the backend is down."""
        ...


class SnapshotChannel:
    """The latest member set plus a way to wait for the next one (latest wins).

    A small building block for sources: :meth:`publish` stores a snapshot and
    wakes the readers; :meth:`snapshots` yields the current one first, then each
    newer one that differs from the last it yielded. Not thread-safe: use it on
    the loop that runs the source.
    """

    def __init__(self, initial: Iterable[Member] = ()) -> None:
        self._current: MemberSet = frozenset(initial)
        self._version = 0
        self._changed = asyncio.Event()

    @property
    def current(self) -> MemberSet:
        """The latest snapshot."""
        return self._current

    def publish(self, members: Iterable[Member]) -> bool:
        """Make ``members`` the current snapshot; True if it differs from the last."""
        snapshot = frozenset(members)
        if snapshot == self._current:
            return False
        self._current = snapshot
        self._version += 1
        # Wake every waiting reader, then re-arm for the next change.
        self._changed.set()
        self._changed = asyncio.Event()
        return True

    async def snapshots(self) -> AsyncIterator[MemberSet]:
        """Yield the current snapshot, then every later one (skipping any that were
        replaced before this reader got to them)."""
        seen = -1
        while True:
            if seen != self._version:
                seen = self._version
                yield self._current
                continue
            await self._changed.wait()
