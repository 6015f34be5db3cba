"""What a server needs of a node and of its groups: :class:`ServedNode`, :class:`ServedGroup`.

The front ends (the HTTP API, the HTTP and gRPC peer servers, the in-memory
transport) are adapters: they sit above the async core and may not import the
node or the group they serve (the node imports them). They type against these
two protocols instead, which :class:`~shoal.node.Node` and
:class:`~shoal.group.Group` satisfy structurally (mypy checks it where the node
hands itself to its servers). Rules: only protocols here, no behaviour; a
method goes in a protocol when a front end calls it, and nothing else does;
the groups are served as bytes (a server never decodes a value).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from ._changes import ChangeLog
from .config import GroupConfig, NodeConfig
from .stats import GroupStats

__all__ = ["MembershipSource", "ServedGroup", "ServedNode"]


class ServedGroup(Protocol):
    """The server-facing side of a group (see :class:`~shoal.group.Group` for each method).

    Every method a server calls for a request is a ``serve_`` verb; a client's
    writes and its many-key read are the user API's own calls, as a user would
    make them (``get_many_bytes``, ``set_bytes``, ``delete``, ``remove_keys``,
    ``invalidate_group``). The contract:

    - Where they run: the coroutines, and :meth:`serve_load_future` (a future
      returned at once: no coroutine, no task), on the group's event loop.
      :meth:`serve_cached` and :meth:`serve_peer_nowait` never await, so a
      server answers a hit without a task.
    - Who counts: :meth:`serve_cached` and :meth:`serve_peer_nowait` (so
      :meth:`serve_peer`) count the request in ``server_requests``; a server that
      answers a get another way (:meth:`serve_load` after its own lookup, a batch
      read) counts it with :meth:`serve_count`. Misses, loads and peer traffic
      are counted by the group itself.
    - Origin: a client's reads may go to the key's owner (:meth:`serve_load`,
      :meth:`serve_load_future`); a peer's requests (``serve_peer_*``) are
      answered here and never forwarded, whatever this node's ring says.
    """

    @property
    def name(self) -> str:
        """The group's name."""
        ...

    @property
    def config(self) -> GroupConfig:
        """The group's configuration."""
        ...

    def validate_key(self, key: str) -> None:
        """Raise InvalidKey or KeyTooLarge for a key the group refuses."""
        ...

    def statistics(self) -> GroupStats:
        """A snapshot of the group's counters and caches."""
        ...

    def serve_count(self) -> None:
        """Count a get that arrived over the network and was not counted otherwise."""
        ...

    # -- a client's requests (the HTTP API, the gRPC Cache service)

    def serve_cached(self, key: str) -> bytes | None:
        """The cached bytes of ``key`` for a get that arrived over the network, or None."""
        ...

    async def serve_load(self, key: str) -> bytes:
        """Load ``key`` through its flight without looking in the caches first."""
        ...

    def serve_load_future(self, key: str) -> asyncio.Future[bytes]:
        """:meth:`serve_load` as a future, returned at once."""
        ...

    async def get_many_bytes(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The stored bytes of every key found."""
        ...

    async def set_bytes(
        self, key: str, data: bytes, ttl: float | None = None, *, expires_at: float | None = None
    ) -> None:
        """Store ``data`` under ``key`` on every member."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove ``key`` from every member's caches; whether it was cached."""
        ...

    async def remove_keys(self, keys: Iterable[str]) -> int:
        """Remove several keys from every member's caches."""
        ...

    async def invalidate_group(self) -> int:
        """Drop every key of the group on every member."""
        ...

    # -- a peer's requests (never forwarded)

    async def serve_peer(self, key: str) -> tuple[bytes, float | None]:
        """Answer a peer's request for ``key`` from the caches, else loaded here."""
        ...

    def serve_peer_nowait(self, key: str) -> tuple[bytes, float | None] | None:
        """The cached answer to a peer's request for ``key``, or None on a miss."""
        ...

    async def serve_peer_load(self, key: str) -> tuple[bytes, float | None]:
        """Load ``key`` for a peer after :meth:`serve_peer_nowait` missed."""
        ...

    async def serve_peer_set(self, key: str, data: bytes, *, expires_at: float | None) -> None:
        """Store a value a peer sent."""
        ...

    async def serve_peer_remove(self, keys: Iterable[str]) -> int:
        """Drop keys a peer named from this node's caches."""
        ...

    async def serve_peer_invalidate(self) -> int:
        """Drop every key from this node's caches, as a peer asked."""
        ...


class MembershipSource(Protocol):
    """What a server reads of the node's membership source."""

    def statistics(self) -> dict[str, Any]:
        """Plain data about the source's state and traffic."""
        ...


class ServedNode(Protocol):
    """The server-facing side of a node (see :class:`~shoal.node.Node` for each member)."""

    @property
    def config(self) -> NodeConfig:
        """The node's configuration: limits, timeouts, the peer base path."""
        ...

    @property
    def groups(self) -> Mapping[str, ServedGroup]:
        """The node's groups by name (a live read-only view)."""
        ...

    def get_group(self, name: str) -> ServedGroup:
        """The group called ``name``; raises GroupNotFound."""
        ...

    @property
    def changes(self) -> ChangeLog:
        """The log of changed keys near caches follow."""
        ...

    @property
    def membership(self) -> MembershipSource | None:
        """Where the member list comes from, once started."""
        ...

    def cluster_info(self, key: str | None = None) -> dict[str, Any]:
        """The cluster as this node sees it, as plain data."""
        ...

    async def serve_replica(self, request: bytes, *, group: str | None = None) -> bytes:
        """Answer a peer's serialized ``ReplicaRequest`` with a serialized answer."""
        ...

    def peer_statistics(self) -> dict[str, dict[str, int]]:
        """Per peer URL, the counters of this node's client for it."""
        ...

    def loader_statistics(self) -> dict[str, int]:
        """The sync loader threads' counters."""
        ...

    def background_errors(self) -> dict[str, int]:
        """Failed rounds of the node's background tasks, by task."""
        ...

    def tls_handshake_failures(self) -> dict[str, int]:
        """Per TLS server of the node, the handshakes that failed."""
        ...

    def accept_errors(self) -> dict[str, int]:
        """Per HTTP server of this node, the accepts that failed for lack of descriptors."""
        ...
