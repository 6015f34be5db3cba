"""Peer picking: the current ring plus one client per peer, swapped as one unit.

The protocols a peer transport implements (:class:`PeerClient`,
:class:`Transport`, :class:`Fetched`, :data:`FetchDone`) are declared here, in
the core that uses them; :mod:`shoal.transport` re-exports them for the
transports, which the core never imports.

A membership change builds a new :class:`PeerView` (new ring, clients for the
new members, the old clients kept) while the old view keeps serving, then
swaps it in with a single assignment, so no reader ever sees a ring whose
members have no clients.

A peer whose exchange fails becomes *suspect*, and only one request pays for
finding out that it is gone:

- While a suspect peer's back-off window runs, :meth:`PeerPicker.pick` names no
  client for its keys: the group fails over at once (loads locally, or answers
  that the owner is unavailable) instead of every request waiting a timeout.
- When the window ends, ``pick`` lets exactly one load through as a probe (the
  load of one key, which may pick more than once), and no other until that
  probe's outcome is reported (or, were it never reported, until the longest
  window has passed). A probe that succeeds makes the peer healthy again at
  once; one that fails starts a window twice as long as the last, up to
  :data:`MAX_BACKOFF_FACTOR` times the configured back-off.
- A failure reported during a window by an exchange that started before the
  peer became suspect changes nothing: the peer was already known to fail.
- :meth:`PeerPicker.backing_off` lists the peers inside a window (or holding a
  probe), which is what writes and replication skip; a suspect peer whose
  window has ended is not listed, so a write or push may be the probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Protocol

from .errors import ConfigError
from .ring import Ring

__all__ = [
    "MAX_BACKOFF_FACTOR",
    "FetchDone",
    "Fetched",
    "PeerClient",
    "PeerPicker",
    "PeerView",
    "Transport",
]

MAX_BACKOFF_FACTOR: Final = 8
"""A suspect peer's back-off window doubles with each failed probe, up to this many
times the configured back-off."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """A value as a peer returned it."""

    value: bytes
    """The value's bytes."""
    expires_at: float | None = None
    """Absolute expiry in Unix seconds (sent as Unix nanoseconds), or None."""
    minute_qps: float | None = None
    """The owner's estimate of the key's requests per second over the last minute."""


FetchDone = Callable[["Fetched | None", "BaseException | None"], None]
"""What :meth:`PeerClient.fetch` calls with its outcome: ``(fetched, None)`` or
``(None, error)``, the error being one :meth:`PeerClient.get` would raise."""


class PeerClient(Protocol):
    """Talks to one peer. Safe to share between tasks of one event loop."""

    @property
    def url(self) -> str:
        """The peer's URL, its identity on the ring."""
        ...

    async def get(self, group: str, key: str) -> Fetched:
        """Fetch ``key`` of ``group`` from the peer, which loads it if needed.

        Callers bound the wait with ``asyncio.timeout``; a client cancelled in the
        middle of an exchange discards that connection (its state is unknown).

        Raises:
            NotFound: the owner says the key does not exist.
            RemoteLoadError: the owner's loader failed.
            PeerUnavailable: the connection failed.
            PeerError: any other failure of the exchange (bad status, bad body).
        """
        ...

    def fetch(self, group: str, key: str, done: FetchDone) -> Callable[[], None] | None:
        """Start fetching ``key`` of ``group`` without a task, if this client can.

        ``done`` is called exactly once, from the event loop, with the outcome of
        :meth:`get` (a callback rather than a coroutine: no task per fetch),
        unless the returned function is called first, which abandons the fetch.
        The caller bounds the wait itself.

        Returns:
            A function that abandons the fetch; None when this client cannot
            fetch this way now (the caller awaits :meth:`get` instead).
        """
        ...

    async def get_many(self, group: str, keys: list[str]) -> dict[str, Fetched]:
        """Fetch several keys in one exchange; keys the owner lacks are left out.

        Raises the same errors as :meth:`get`, except NotFound.
        """
        ...

    async def set(
        self, group: str, key: str, value: bytes, expires_at: float | None = None
    ) -> None:
        """Store ``value`` under ``key`` on the peer, in its caches only (the peer
        forwards nothing: the node that took the write tells the others).

        Args:
            expires_at: absolute expiry in Unix seconds; None: never.

        Raises:
            PeerUnavailable, PeerError: as :meth:`get`.
        """
        ...

    async def remove_keys(self, group: str, keys: list[str]) -> int | None:
        """Drop ``keys`` from the peer's caches (its own copies and hot copies).

        Returns:
            How many of the keys the peer had cached or was loading; None when
            the peer does not say (a Go peer).

        Raises:
            PeerUnavailable, PeerError: as :meth:`get`.
        """
        ...

    async def invalidate(self, group: str) -> int | None:
        """Drop every key of ``group`` from the peer's caches.

        Returns:
            How many keys the peer dropped; None when the peer cannot do this (a
            Go peer, which is left alone).

        Raises:
            PeerUnavailable, PeerError: as :meth:`get`.
        """
        ...

    async def replica(self, group: str, request: bytes) -> bytes:
        """One exchange of a replicated group: a serialized ``shoal.v1.ReplicaRequest``
        in, the peer's serialized ``ReplicaResponse`` out.

        Raises:
            PeerUnavailable, PeerError: as :meth:`get` (also for a peer that does not
                serve replicated groups).
        """
        ...

    async def op(self, group: str, request: bytes) -> bytes:
        """One atomic operation (or write batch) at the peer, which owns the keys: a
        serialized ``shoal.v1.OpRequest`` in, the peer's ``OpResponse`` out.

        Raises:
            PeerUnavailable, PeerError: as :meth:`get` (also for a peer that does not
                serve the operations).
        """
        ...

    async def aclose(self) -> None:
        """Close the client's connections."""
        ...


class Transport(Protocol):
    """Makes peer clients."""

    def client(self, url: str) -> PeerClient:
        """A client for the peer at ``url`` (connections are opened lazily)."""
        ...

    async def aclose(self) -> None:
        """Close everything the transport opened."""
        ...


@dataclass(frozen=True, slots=True)
class PeerView:
    """One consistent state of the cluster as this node sees it."""

    ring: Ring
    """Who owns which key."""
    clients: Mapping[str, PeerClient] = field(default_factory=dict)
    """A client for every member except this node."""


@dataclass(slots=True)
class _Suspect:
    """A peer whose last exchange failed."""

    window: float
    """Length of the current back-off window, in seconds."""
    until: float
    """When the window ends (a probe may then go through)."""
    probe_key: str | None = None
    """While a probe was let through and its outcome is not known yet: the key whose
    load is the probe (asked for again by the same load, it still goes through: a
    load may pick before it knows how it will fetch). None: no probe out."""


class PeerPicker:
    """Chooses the peer that owns a key, or None when this node should load it.

    Args:
        self_url: this node's URL, as it appears in the member list.
        transport: makes clients for new members.
        ring: the ring flavour (``shoal``, ``golang``, ``groupcache-go``).
        replicas: virtual nodes per member (None: the flavour's default).
        backoff: seconds a peer that just failed is skipped (the first back-off
            window; later ones grow, see the module docstring).
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
        self._max_backoff = backoff * MAX_BACKOFF_FACTOR
        self._suspects: dict[str, _Suspect] = {}

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
        for url in list(self._suspects):
            if url not in clients:
                del self._suspects[url]
        return [c for url, c in old.clients.items() if url not in clients]

    def owner(self, key: str) -> str:
        """The URL of the member that owns ``key``."""
        return self._view.ring.owner(key)

    def pick(self, key: str) -> PeerClient | None:
        """The client of the peer owning ``key``; None if this node owns it or the owner
        is suspect (see the module docstring: a suspect owner's client is returned
        to one caller per back-off window, the probe)."""
        view = self._view
        owner = view.ring.owner(key)
        if owner == self.self_url:
            return None
        if self._suspects:
            suspect = self._suspects.get(owner)
            if suspect is not None and not self._probe(suspect, key):
                return None
        return view.clients.get(owner)

    def _probe(self, suspect: _Suspect, key: str) -> bool:
        """Whether a request for ``key`` may go to ``suspect`` now, as its probe."""
        if suspect.probe_key == key:
            return True
        now = self._clock()
        if now < suspect.until:
            return False
        # The probe holds the peer until its outcome is reported; the longest window
        # bounds the wait for an outcome that never comes (a cancelled request).
        suspect.probe_key = key
        suspect.until = now + self._max_backoff
        return True

    def failed(self, url: str) -> None:
        """Note a transport failure of ``url``: it becomes suspect, or, if this was
        its probe (or a request after its window ended), its next window is twice
        as long (bounded). A failure inside a window changes nothing."""
        now = self._clock()
        suspect = self._suspects.get(url)
        if suspect is None:
            self._suspects[url] = _Suspect(self._backoff, now + self._backoff)
        elif suspect.probe_key is not None or now >= suspect.until:
            suspect.window = min(suspect.window * 2, self._max_backoff)
            suspect.until = now + suspect.window
            suspect.probe_key = None

    def succeeded(self, url: str) -> None:
        """Note a successful exchange with ``url``: it is healthy again at once."""
        if self._suspects:
            self._suspects.pop(url, None)

    def suspect(self, url: str) -> bool:
        """Whether ``url`` failed and has not answered since."""
        return url in self._suspects

    def backing_off(self) -> list[str]:
        """Peers skipped now: suspect, inside their window or holding a probe."""
        now = self._clock()
        return [u for u, s in self._suspects.items() if s.until > now]

    async def aclose(self) -> None:
        """Close every peer client and the transport."""
        for client in self._view.clients.values():
            await client.aclose()
        await self._transport.aclose()
