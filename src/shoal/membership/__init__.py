"""Membership: where a node's member list comes from, as a stream of snapshots.

Four interchangeable sources sit behind one Protocol, :class:`Membership`:

- ``static`` (:mod:`.static`): the list from the configuration; never changes.
- ``etcd`` (:mod:`.etcd`): each node registers a key under a lease it keeps
  alive and watches the cluster's prefix (extra ``shoal[etcd]``).
- ``gossip`` (:mod:`.gossip`): SWIM failure detection and dissemination over
  UDP, started from one or a few bootstrap addresses; no dependency.
- ``dns`` (:mod:`.dns`): the A/AAAA or SRV records of one name, looked up
  every interval (SRV and a DNS server of one's own: extra ``shoal[dns]``).

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

Inputs from the network (gossip datagrams, etcd records, the URLs they carry)
are untrusted. They are checked here, in one place, by pure functions:
:func:`check_member_url` (the URL a member publishes: ``http``/``https``, or also
``grpc`` with the gRPC transport; a host; a port from 1 to 65535; no user,
query or fragment; printable ASCII; at most :data:`MAX_URL_LENGTH` characters)
and :func:`load_json` (a JSON document of bounded size and nesting depth, so a
hostile ``[[[[...`` is refused before the parser recurses). A bad member or
record is skipped on its own; it never keeps the others from being applied.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import urlsplit

from ..config import check_node_id, default_node_id

__all__ = [
    "Member",
    "MemberSet",
    "Membership",
    "SnapshotChannel",
    "SOURCES",
    "default_node_id",
    "check_node_id",
    "check_member_url",
    "load_json",
    "BadInput",
    "MAX_URL_LENGTH",
]

SOURCES: Final = ("static", "etcd", "gossip", "dns")
"""The membership sources a node can use."""

MAX_URL_LENGTH: Final = 512
"""The longest member URL accepted (a URL is a host, a port and maybe a short path)."""


class BadInput(ValueError):
    """A membership input (URL, record, datagram) that is refused."""


def check_member_url(url: object, *, grpc: bool = False) -> str:
    """Return ``url`` if it can be a member's URL on the ring.

    Args:
        url: the URL a member publishes.
        grpc: the peers speak gRPC: ``grpc://host:port`` is accepted too, and
            no path (gRPC has none).

    Raises:
        BadInput: not a string; longer than :data:`MAX_URL_LENGTH`; not printable
            ASCII; another scheme; no host; a port outside 1-65535 (or none for
            ``grpc://``); a user, a query or a fragment; a path with gRPC.
    """
    if not isinstance(url, str):
        raise BadInput(f"a member URL must be a string, got {type(url).__name__}")
    if len(url) > MAX_URL_LENGTH:
        raise BadInput(f"a member URL is at most {MAX_URL_LENGTH} characters, got {len(url)}")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise BadInput(f"a member URL must be printable ASCII without spaces, got {url!r}")
    parts = urlsplit(url)
    schemes = ("http", "https", "grpc") if grpc else ("http", "https")
    if parts.scheme not in schemes:
        expected = " or ".join(f"{scheme}://" for scheme in schemes)
        raise BadInput(f"a member URL is {expected}host:port, got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise BadInput(f"a member URL needs a port from 1 to 65535, got {url!r}") from None
    if not parts.hostname or port == 0 or (port is None and parts.scheme == "grpc"):
        raise BadInput(f"a member URL needs a host and a port from 1 to 65535, got {url!r}")
    if "@" in parts.netloc or parts.query or parts.fragment or url.endswith(("?", "#")):
        raise BadInput(f"a member URL has no user, query or fragment, got {url!r}")
    if grpc and parts.path not in ("", "/"):
        raise BadInput(f"a gRPC member URL has no path, got {url!r}")
    return url


# A JSON string (escapes included) or one bracket: what the depth scan looks at.
_STRUCTURE: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _too_deep(data: bytes, max_depth: int) -> bool:
    """True if the JSON text ``data`` nests arrays and objects deeper than ``max_depth``."""
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False  # not even that many brackets: the common case, at C speed
    depth = 0
    for match in _STRUCTURE.finditer(data):
        char = match.group()
        if char in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return True
        elif char in (b"]", b"}"):
            depth -= 1
    return False


def load_json(data: bytes, *, max_bytes: int, max_depth: int) -> Any:
    """Parse an untrusted JSON document of at most ``max_bytes`` bytes and
    ``max_depth`` levels of arrays and objects.

    Raises:
        BadInput: too large, too deep, not UTF-8 or not JSON (never
            ``RecursionError``).
    """
    if len(data) > max_bytes:
        raise BadInput(f"{len(data)} bytes, more than {max_bytes}")
    if _too_deep(data, max_depth):
        raise BadInput(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadInput(f"not JSON: {exc}") from None


@dataclass(frozen=True, slots=True)
class Member:
    """One live member of the cluster, as a membership source reports it."""

    node_id: str
    """Stable identity of the node (``--node-id``; default derived from its URL)."""
    url: str
    """Its URL on the ring: where peers fetch keys from it."""
    source: str
    """Where this node learned of it: ``static``, ``etcd``, ``gossip`` or ``dns``."""
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
    """A source of member-set snapshots (static list, etcd, gossip, DNS)."""

    source: str
    """``static``, ``etcd``, ``gossip`` or ``dns``."""

    async def start(self) -> MemberSet:
        """Register or join, and return the first view.

        Never fails because the backend is unreachable: the view is then this
        node alone (or the configured list) and :meth:`run` keeps trying.
        """
        ...

    @property
    def has_view(self) -> bool:
        """True once the source has its first member view of the cluster: a static
        list at once, etcd after its first read of the members, gossip once a
        bootstrap member answered (at once without one), DNS after its first lookup
        that found members. ``GET /readyz`` waits for it."""
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

    def ring_order(self, urls: Iterable[str]) -> list[str]:
        """The members' URLs in the order every node builds its ring from (the order
        settles hash collisions, so all must agree): the configured order for a
        fixed list, URL order for a discovered one.

        Args:
            urls: the members of the snapshot being applied.
        """
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
