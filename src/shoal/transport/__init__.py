"""Peer transports: how a node fetches keys from the nodes that own them.

A transport makes :class:`PeerClient` objects, one per peer URL. The core
(:mod:`shoal.peers`, :mod:`shoal.group`) sees only these protocols; the
adapters (``transport/http.py``: the groupcache-compatible HTTP protocol) are
the only modules that touch sockets, and they translate every foreign error
into the :mod:`shoal.errors` hierarchy at their boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Fetched", "FetchDone", "PeerClient", "Transport"]


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
