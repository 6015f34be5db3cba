"""The task-free miss path: a key owned by a peer, fetched on callbacks, with no task.

A miss of a key a peer owns is mostly waiting for one answer, and a task with
its coroutine chain costs more than the rest of the fetch. So such a load runs
on callbacks, in three parts (docs/architecture.md, "The task-free miss path",
walks through it with a request):

1. :meth:`Flight.join(key, fn, direct) <shoal.singleflight.Flight.join>` offers a
   *new* call to ``direct(call)`` before it spawns ``fn(call)`` in a task. The
   group's ``direct`` declines (False) for a replicated group, a node without
   peers, a key owned here or a peer in its back-off window; else it hands the
   call to :meth:`DirectFetches.start`.
2. :meth:`PeerClient.fetch(group, key, done) <shoal.peers.PeerClient.fetch>`
   queues the fetch and returns an ``abandon`` function, or None when this
   client cannot fetch without a task (the load then takes the task path). The
   ``abandon`` function becomes the call's ``cancel`` (how :meth:`Flight.aclose
   <shoal.singleflight.Flight.aclose>` stops it), and the ``peer_timeout`` is
   watched on the group's one shared timer (:mod:`shoal._deadlines`).
3. :meth:`DirectFetch.done`, the client's callback, gives the outcomes the task
   path (the group's ``_load_once`` with its fetch from the peer) would have: a
   value is counted, maybe kept as a hot copy, and settled into the waiters
   (:meth:`Flight.settle <shoal.singleflight.Flight.settle>`); NotFound is
   remembered (``negative_ttl``) and settled; a :class:`~shoal.errors.PeerError`,
   or the timeout, marks the peer failed and hands the call to a task that loads
   here (:meth:`Flight.run <shoal.singleflight.Flight.run>`).

Rules: waiters are plain futures either way, and a cancelled waiter cancels
only its own wait; what a fetch does with an outcome is the group's (the
callables of :class:`DirectFetches`), so both paths share it; a finished fetch
unlinks itself from its call and its watch, so the exchange is freed by
reference counting, not by a later garbage-collector pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ._deadlines import Deadlines, Watch
from .errors import LoadedValueTooLarge, NotFound, PeerError, PeerTimeout
from .singleflight import Call, Flight

if TYPE_CHECKING:
    from .peers import Fetched, PeerClient

__all__ = ["DirectFetch", "DirectFetches"]


class DirectFetches:
    """What every direct fetch of one group shares: its flight and how it takes outcomes.

    Args:
        group: the group's name, as the peer is asked for it.
        flight: the flight the fetched calls belong to.
        took: a value fetched from a peer for a call: counted, maybe kept; the
            bytes to settle (raises LoadedValueTooLarge for one over the limit).
        remember_missing: the owner says the call's key does not exist.
        fall_back: the peer failed (or timed out): note it and load here.
        peer_timeout: seconds a fetch may take (for the timeout's message).
    """

    __slots__ = ("fall_back", "flight", "group", "peer_timeout", "remember_missing", "took")

    def __init__(
        self,
        group: str,
        flight: Flight[bytes],
        *,
        took: Callable[[PeerClient, Call[bytes], Fetched], bytes],
        remember_missing: Callable[[Call[bytes]], None],
        fall_back: Callable[[PeerClient, Call[bytes], PeerError], None],
        peer_timeout: float,
    ) -> None:
        self.group = group
        self.flight = flight
        self.took = took
        self.remember_missing = remember_missing
        self.fall_back = fall_back
        self.peer_timeout = peer_timeout

    def start(self, call: Call[bytes], peer: PeerClient, deadlines: Deadlines) -> bool:
        """Fetch ``call.key`` from ``peer`` without a task; False if the client cannot."""
        fetch = DirectFetch(self, call, peer)
        abandon = peer.fetch(self.group, call.key, fetch.done)
        if abandon is None:
            return False
        fetch.start(abandon, deadlines)
        return True


class DirectFetch:
    """One load of a key owned by a peer, run from the peer client's callback: the
    same outcomes as the task path with a fetch that succeeds, says NotFound or
    fails, without a task."""

    __slots__ = ("_call", "_peer", "_shared", "_watch")

    def __init__(self, shared: DirectFetches, call: Call[bytes], peer: PeerClient) -> None:
        self._shared = shared
        self._call = call
        self._peer = peer
        self._watch: Watch | None = None

    def start(self, abandon: Callable[[], None], deadlines: Deadlines) -> None:
        """Watch the fetch's deadline; ``abandon`` stops it (also how Flight.aclose does)."""
        self._call.cancel = abandon
        self._watch = deadlines.watch(self._expired)

    def done(self, fetched: Fetched | None, error: BaseException | None) -> None:
        """The peer client's callback."""
        self._finish()
        shared, call = self._shared, self._call
        flight = shared.flight
        if fetched is not None:
            try:
                data = shared.took(self._peer, call, fetched)
            except LoadedValueTooLarge as exc:
                flight.settle(call, error=exc)
            else:
                flight.settle(call, data)
        elif isinstance(error, PeerError):
            shared.fall_back(self._peer, call, error)
        else:
            if isinstance(error, NotFound):
                shared.remember_missing(call)
            flight.settle(call, error=error)

    def _expired(self) -> None:
        abandon = self._call.cancel
        if abandon is not None:
            abandon()
        self._finish()
        shared = self._shared
        shared.fall_back(
            self._peer,
            self._call,
            PeerTimeout(f"{self._peer.url} did not answer within {shared.peer_timeout}s"),
        )

    def _finish(self) -> None:
        # This object, its call, its watch and the client's fetch refer to each other:
        # letting go here frees them by reference counting, not by a GC run later
        # (which, at thousands of fetches a second, costs more than the fetch).
        watch = self._watch
        if watch is not None:
            watch.done = True
            self._watch = None
        self._call.cancel = None
