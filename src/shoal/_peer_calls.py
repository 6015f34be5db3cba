"""How one group reaches its peers: within ``peer_timeout``, with the back-off kept.

:class:`PeerCalls` holds the group's :class:`~shoal.peers.PeerPicker` (set by the
node once it has peers) and the group's one ``peer_timeout`` timer, and is what
the group's replica sees as its :class:`~shoal.replication.ReplicaPeers`.

Rules: every exchange with a peer is bounded by ``peer_timeout``
(:class:`~shoal.errors.PeerTimeout`); a peer that cannot be reached is marked
failed (skipped for a while), one that answered is marked as succeeded, and a
refusal leaves it serving reads as before; each failure is counted once in
``errors`` (the group's ``peer_errors``); a fan-out to every member logs a
member that fails and never raises.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, TypeVar

from ._deadlines import Deadlines
from ._printable import printable
from .errors import PeerError, PeerTimeout, PeerUnavailable

if TYPE_CHECKING:
    from .peers import PeerClient, PeerPicker

__all__ = ["PeerCalls"]

log = logging.getLogger("shoal.group")

T = TypeVar("T")


class PeerCalls:
    """One group's exchanges with its peers (see the module docstring).

    Args:
        group: the group's name (the peers are asked for it; it names the logs).
        peer_timeout: seconds an exchange may take.
    """

    __slots__ = ("_deadlines", "errors", "group", "peer_timeout", "peers")

    def __init__(self, group: str, peer_timeout: float) -> None:
        self.group = group
        self.peer_timeout = peer_timeout
        self.peers: PeerPicker | None = None
        """Who owns which key; None while the group runs alone."""
        self.errors = 0
        """Exchanges with a peer that failed."""
        # peer_timeout for every exchange, on one timer (made on first use).
        self._deadlines: Deadlines | None = None

    async def within_peer_timeout(self, peer: PeerClient, exchange: Awaitable[T]) -> T:
        """Await an exchange with ``peer`` for at most ``peer_timeout`` seconds.

        Must be awaited from a task of the group's loop (the deadline is the task's).

        Raises:
            PeerTimeout: no answer in time (the exchange is cancelled).
        """
        try:
            with self._deadline():
                return await exchange
        except TimeoutError as exc:
            raise PeerTimeout(f"{peer.url} did not answer within {self.peer_timeout}s") from exc

    def _deadline(self) -> AbstractContextManager[object]:
        """A ``peer_timeout`` scope for the current task (``asyncio.timeout``'s
        semantics on one shared timer: see :mod:`shoal._deadlines`)."""
        deadlines = self._deadlines
        scope = deadlines.scope() if deadlines is not None else None
        if scope is None:  # the first fetch, or the group now runs on another loop
            scope = self.timer(asyncio.get_running_loop()).scope()
            assert scope is not None  # called from a task of the running loop
        return scope

    def timer(self, loop: asyncio.AbstractEventLoop) -> Deadlines:
        """The group's ``peer_timeout`` deadlines on ``loop`` (the running one)."""
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            deadlines = self._deadlines = Deadlines(self.peer_timeout, loop)
        return deadlines

    def failed(self, peer: PeerClient, what: str, exc: PeerError, *, loads_here: bool) -> None:
        """A read from ``peer`` failed: count it, skip the peer for a while, log it."""
        self.errors += 1
        if self.peers is not None:
            self.peers.failed(peer.url)
        log.warning(
            "group %r: peer %s failed for %s (%s); %s",
            self.group,
            peer.url,
            what,
            printable(str(exc)),
            "loading locally" if loads_here else "unavailable: no loader here",
        )

    def owner_client(self, key: str) -> PeerClient | None:
        """The client of the member owning ``key``, None if this node owns it.

        Raises:
            PeerUnavailable: the owner is skipped after failures.
        """
        peers = self.peers
        if peers is None:
            return None
        owner = peers.owner(key)
        if owner == peers.self_url:
            return None
        client = peers.view.clients.get(owner)
        if client is None or owner in peers.backing_off():
            raise PeerUnavailable(f"{owner}, the owner of {key!r}, is not answering")
        return client

    async def on_peer(self, peer: PeerClient, exchange: Awaitable[T]) -> T:
        """Await one write exchange with ``peer`` within ``peer_timeout``; a peer that
        cannot be reached is skipped for a while.

        Raises:
            PeerTimeout: no answer in time. PeerError: the exchange failed.
        """
        try:
            result = await self.within_peer_timeout(peer, exchange)
        except PeerError as exc:
            self.errors += 1
            # Only a peer that cannot be reached is skipped for a while; one that
            # answered (a refusal, a Go peer without writes) serves reads as before.
            if self.peers is not None and isinstance(exc, PeerUnavailable | PeerTimeout):
                self.peers.failed(peer.url)
            raise
        if self.peers is not None:
            self.peers.succeeded(peer.url)
        return result

    async def broadcast_remove(self, keys: list[str], skip: PeerClient | None = None) -> None:
        """Tell every other member to drop its copies of ``keys`` (best effort)."""
        await self.on_every_peer(
            f"remove {len(keys)} keys", lambda peer: peer.remove_keys(self.group, keys), skip=skip
        )

    async def on_every_peer(
        self,
        what: str,
        exchange: Callable[[PeerClient], Awaitable[object]],
        skip: PeerClient | None = None,
    ) -> None:
        """Run ``exchange`` with every member at once. A member that fails is logged
        and counted, not raised: its copies age out with their TTL, and a member
        that is down has none."""
        peers = self.peers
        if peers is None:
            return
        targets = [c for c in peers.view.clients.values() if c is not skip]

        async def one(peer: PeerClient) -> None:
            try:
                await self.on_peer(peer, exchange(peer))
            except PeerError as exc:
                log.warning(
                    "group %r: %s on %s failed: %s", self.group, what, peer.url, printable(str(exc))
                )

        await asyncio.gather(*(one(peer) for peer in targets))
