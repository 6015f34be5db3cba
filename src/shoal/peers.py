"""Peer picking: the current ring plus one client per peer, swapped as one unit.

A membership change builds a new :class:`PeerView` (new ring, clients for the
new members, the old clients kept) while the old view keeps serving, then
swaps it in with a single assignment, so no reader ever sees a ring whose
members have no clients. A peer whose requests fail is skipped for a short
back-off: keys it owns are loaded locally meanwhile, instead of every request
paying a timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .errors import ConfigError
from .ring import Ring
from .transport import PeerClient, Transport

__all__ = ["PeerPicker", "PeerView"]


@dataclass(frozen=True, slots=True)
class PeerView:
    """One consistent state of the cluster as this node sees it."""

    ring: Ring
    """Who owns which key."""
    clients: Mapping[str, PeerClient] = field(default_factory=dict)
    """A client for every member except this node."""


class PeerPicker:
    """Chooses the peer that owns a key, or None when this node should load it.

    Args:
        self_url: this node's URL, as it appears in the member list.
        transport: makes clients for new members.
        ring: the ring flavour (``shoal``, ``golang``, ``groupcache-go``).
        replicas: virtual nodes per member (None: the flavour's default).
        backoff: seconds a failing peer is skipped.
        clock: monotonic time source.
    """

    def __init__(
        self,
        self_url: str,
        transport: Transport,
        *,
        ring: str = "shoal",
        replicas: int | None = None,
        backoff: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.self_url = self_url
        self._transport = transport
        self._flavour = ring
        self._replicas = replicas
        self._backoff = backoff
        self._clock = clock
        self._view = PeerView(Ring.build([self_url], flavour=ring, replicas=replicas))
        self._failed_until: dict[str, float] = {}

    @property
    def view(self) -> PeerView:
        """The current view (ring and clients)."""
        return self._view

    def set_peers(self, urls: Iterable[str]) -> list[PeerClient]:
        """Make ``urls`` the members (this node is added if missing).

        Returns:
            The clients of members that left; the caller closes them.

        Raises:
            ConfigError: an empty or duplicate URL.
        """
        members = list(dict.fromkeys(urls))
        if any(not u for u in members):
            raise ConfigError("a peer URL is empty")
        if self.self_url not in members:
            members.append(self.self_url)
        old = self._view
        clients = {
            url: old.clients.get(url) or self._transport.client(url)
            for url in members
            if url != self.self_url
        }
        ring = old.ring.with_nodes(members)
        self._view = PeerView(ring, MappingProxyType(clients))  # the one swap
        for url in list(self._failed_until):
            if url not in clients:
                del self._failed_until[url]
        return [c for url, c in old.clients.items() if url not in clients]

    def owner(self, key: str) -> str:
        """The URL of the member that owns ``key``."""
        return self._view.ring.owner(key)

    def pick(self, key: str) -> PeerClient | None:
        """The client of the peer owning ``key``; None if this node owns it or the owner
        is in its failure back-off."""
        view = self._view
        owner = view.ring.owner(key)
        if owner == self.self_url:
            return None
        if self._failed_until and self._failed_until.get(owner, 0.0) > self._clock():
            return None
        return view.clients.get(owner)

    def failed(self, url: str) -> None:
        """Note a transport failure of ``url``: skip it for the back-off period."""
        self._failed_until[url] = self._clock() + self._backoff

    def succeeded(self, url: str) -> None:
        """Note a successful exchange with ``url``: end any back-off."""
        if self._failed_until:
            self._failed_until.pop(url, None)

    def backing_off(self) -> list[str]:
        """Peers currently skipped after failures."""
        now = self._clock()
        return [u for u, until in self._failed_until.items() if until > now]

    async def aclose(self) -> None:
        """Close every peer client and the transport."""
        for client in self._view.clients.values():
            await client.aclose()
        await self._transport.aclose()
