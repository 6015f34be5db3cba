"""An in-process transport: nodes of one process reach each other by direct calls.

For tests, examples and documentation of the cluster logic without sockets.
Every node registers its URL on one :class:`MemoryNetwork`; a URL marked down
(or never registered) refuses connections like a dead process would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import (
    GroupNotFound,
    LoadError,
    NotFound,
    PeerError,
    PeerUnavailable,
    RemoteLoadError,
    ShoalError,
)
from . import FetchDone, Fetched

if TYPE_CHECKING:
    from ..serving import ServedGroup, ServedNode

__all__ = ["MemoryNetwork", "MemoryTransport", "MemoryPeerClient"]


class MemoryNetwork:
    """The nodes of one process, by URL."""

    def __init__(self) -> None:
        self._nodes: dict[str, ServedNode] = {}
        self.down: set[str] = set()
        """URLs that refuse every request (a killed node)."""
        self.requests = 0
        """Requests sent over this network (peer fetches)."""

    def register(self, url: str, node: ServedNode) -> None:
        """Make ``node`` reachable at ``url``."""
        self._nodes[url] = node

    def transport(self) -> MemoryTransport:
        """A transport for one node of this network."""
        return MemoryTransport(self)

    def _node(self, url: str) -> ServedNode:
        node = self._nodes.get(url)
        if node is None or url in self.down:
            raise PeerUnavailable(f"{url}: connection refused")
        return node


class MemoryTransport:
    """Makes :class:`MemoryPeerClient` objects on one network."""

    def __init__(self, network: MemoryNetwork) -> None:
        self._network = network

    def client(self, url: str) -> MemoryPeerClient:
        """A client for the node registered at ``url``."""
        return MemoryPeerClient(self._network, url)

    async def aclose(self) -> None:
        """Nothing to close."""


class MemoryPeerClient:
    """Calls the peer's group directly, with the errors a real transport would give."""

    def __init__(self, network: MemoryNetwork, url: str) -> None:
        self._network = network
        self._url = url

    @property
    def url(self) -> str:
        """The peer's URL."""
        return self._url

    def fetch(self, group: str, key: str, done: FetchDone) -> Callable[[], None] | None:
        """Always None: fetches go through :meth:`get` (the peer's load may need a task)."""
        return None

    async def get(self, group: str, key: str) -> Fetched:
        """Fetch ``key`` from the peer's group (the peer never forwards it)."""
        self._network.requests += 1
        return await self._get(group, key)

    async def _get(self, group: str, key: str) -> Fetched:
        node = self._network._node(self._url)
        try:
            target = node.get_group(group)
        except GroupNotFound as exc:
            raise PeerError(f"{self._url}: {exc}") from exc
        try:
            value, expires_at = await target.serve_peer(key)
        except NotFound:
            raise NotFound(key) from None
        except (LoadError, Exception) as exc:
            if isinstance(exc, ShoalError) and not isinstance(exc, LoadError):
                raise PeerError(f"{self._url}: {exc}") from exc
            raise RemoteLoadError(f"{self._url}: loading {key!r} failed: {exc}") from exc
        return Fetched(value, expires_at)

    async def get_many(self, group: str, keys: list[str]) -> dict[str, Fetched]:
        """Fetch the keys in one request; keys the owner lacks are left out."""
        self._network.requests += 1
        found: dict[str, Fetched] = {}
        for key in keys:
            try:
                found[key] = await self._get(group, key)
            except NotFound:
                continue
        return found

    async def set(
        self, group: str, key: str, value: bytes, expires_at: float | None = None
    ) -> None:
        """Store ``value`` in the peer's group (the peer forwards nothing)."""
        self._network.requests += 1
        await self._group(group).serve_peer_set(key, value, expires_at=expires_at)

    async def remove_keys(self, group: str, keys: list[str]) -> int:
        """Drop ``keys`` from the peer's group; how many it had."""
        self._network.requests += 1
        return await self._group(group).serve_peer_remove(keys)

    async def invalidate(self, group: str) -> int:
        """Drop every key of the peer's group; how many it had."""
        self._network.requests += 1
        return await self._group(group).serve_peer_invalidate()

    async def replica(self, group: str, request: bytes) -> bytes:
        """Hand a replicated group's message to the peer."""
        self._network.requests += 1
        node = self._network._node(self._url)
        try:
            return await node.serve_replica(request)
        except ShoalError as exc:
            raise PeerError(f"{self._url}: {exc}") from exc

    async def op(self, group: str, request: bytes) -> bytes:
        """Hand an operation to the peer's own stores."""
        self._network.requests += 1
        node = self._network._node(self._url)
        try:
            return await node.serve_op(request, group=group, client=False)
        except ShoalError as exc:
            raise PeerError(f"{self._url}: {exc}") from exc

    def _group(self, name: str) -> ServedGroup:
        try:
            return self._network._node(self._url).get_group(name)
        except GroupNotFound as exc:
            raise PeerError(f"{self._url}: {exc}") from exc

    async def aclose(self) -> None:
        """Nothing to close."""
