"""Blocking facade for threads: Flask, Django, scripts.

Everything is written once, in async code; this module only forwards. A hit is
answered in the calling thread straight from the thread-safe store (a lock, no
thread switch); a miss or a write is submitted to the node's event loop and
the calling thread waits for it. Calling a blocking method from the event
loop's own thread would deadlock, so it raises ``RuntimeError`` instead.

The facade wraps a group from above, through its public accessors
(:attr:`~shoal.group.Group.codec`, :meth:`~shoal.group.Group.hit_reader`); the
group never imports it. The blocking pieces shared with ``Group.cached`` are in
:mod:`shoal._cached`.

::

    with SyncNode() as node:
        scores = node.group("scores", load_score)     # a sync or async loader
        print(scores.get("Tom"))
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, cast

from ._cached import (
    FORKED_MESSAGE,
    blocking_wrapper,
    default_key,
    get_or_load_blocking,
    mark_forked,
    run_blocking,
)
from .codec import BytesCodec, Codec
from .config import NodeConfig
from .errors import ShoalError
from .group import Group, Loader
from .node import Node, new_event_loop
from .stats import GroupStats
from .value import Value

__all__ = ["SyncGroup", "SyncNode"]

V = TypeVar("V")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class SyncGroup(Generic[V]):
    """Blocking access to a :class:`~shoal.group.Group` from any thread.

    Args:
        group: the group; its event loop must be running in another thread.
    """

    __slots__ = ("__weakref__", "_decode", "_group", "get")

    def __init__(self, group: Group[V]) -> None:
        self._group = group
        codec: Codec[V] = group.codec
        self._decode: Callable[[bytes], V] | None = (
            None if isinstance(codec, BytesCodec) else codec.decode
        )
        # The whole hit path is this one fused store lookup (see Store.reader):
        # lock, dict lookup, LRU touch, decode; a miss goes to _miss.
        self.get: Callable[[str], V] = group.hit_reader(self._miss, self._decode)
        """``get(key)``: the value of ``key``; a hit never leaves the calling thread.

        Raises the same errors as :meth:`Group.get <shoal.group.Group.get>`."""

    @property
    def group(self) -> Group[V]:
        """The async group behind this facade."""
        return self._group

    @property
    def name(self) -> str:
        """The group's name."""
        return self._group.name

    def _forked(self) -> None:
        """In a forked child of a node's process: every call refuses (see SyncNode)."""

        def refuse(key: str) -> V:
            raise ShoalError(FORKED_MESSAGE)

        self.get = refuse

    def _miss(self, key: str) -> V:
        data = self._group.cached_bytes(key)  # the hot cache and negative entries, no hop
        if data is None:
            return run_blocking(self._group.loop, self._group.get(key))
        return cast(V, data) if self._decode is None else self._decode(data)

    def get_or_load(self, key: str, filler: Callable[[], V | Value[V]]) -> V:
        """Return the value of ``key``, filling a miss with ``filler()`` instead of the
        loader (bcache's GetWithFiller; see ``Group.get_or_load``).

        A hit is served in the calling thread. On a miss ``filler`` runs once per key
        in the node's loader threads, however many threads ask at once; it may return
        a :class:`~shoal.value.Value` to give a TTL. It must be a plain function:
        the calling thread blocks until the fill is done.

        Raises:
            TypeError: ``filler`` is a coroutine function (use ``Group.get_or_load``).
        """
        if inspect.iscoroutinefunction(filler):
            raise TypeError("SyncGroup.get_or_load takes a plain function; await Group.get_or_load")
        return cast(V, get_or_load_blocking(self._group, key, filler, self._decode))

    def get_many(self, keys: Iterable[str]) -> dict[str, V]:
        """Return the values of the keys that exist (see ``Group.get_many``)."""
        return run_blocking(self._group.loop, self._group.get_many(list(keys)))

    def set(self, key: str, value: V, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` (see ``Group.set``)."""
        run_blocking(self._group.loop, self._group.set(key, value, ttl))

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was cached (see ``Group.delete``)."""
        return run_blocking(self._group.loop, self._group.delete(key))

    def invalidate(self, key: str) -> None:
        """Drop any cached copy of ``key`` (see ``Group.invalidate``)."""
        run_blocking(self._group.loop, self._group.invalidate(key))

    def remove_keys(self, keys: Iterable[str]) -> int:
        """Remove several keys on every member (see ``Group.remove_keys``)."""
        return run_blocking(self._group.loop, self._group.remove_keys(list(keys)))

    def invalidate_group(self) -> int:
        """Drop every key of the group on every member (see ``Group.invalidate_group``)."""
        return run_blocking(self._group.loop, self._group.invalidate_group())

    def statistics(self) -> GroupStats:
        """A snapshot of the group's statistics (thread-safe, no hop)."""
        return self._group.statistics()

    def cached(
        self, *, key: Callable[..., str] | None = None, ttl: float | None = None
    ) -> Callable[[F], F]:
        """Decorate a plain function so its results are cached by its arguments.

        See :meth:`Group.cached <shoal.group.Group.cached>`; this is its blocking form
        (an async function gets the group's async wrapper, as there).
        """

        def decorate(fn: F) -> F:
            if inspect.iscoroutinefunction(fn):
                return self._group.cached(key=key, ttl=ttl)(fn)
            make_key = key or default_key(fn, self._group.config.max_key_bytes)
            return cast(F, self.wrap(fn, make_key, ttl))

        return decorate

    def wrap(
        self, fn: Callable[..., T], make_key: Callable[..., str], ttl: float | None
    ) -> Callable[..., T]:
        """Return a blocking wrapper of ``fn`` that caches its results under ``make_key(...)``.

        A hit is served in the calling thread; a miss runs ``fn`` once per key in the
        node's loader thread pool, however many threads ask at once.
        """
        return blocking_wrapper(self._group, fn, make_key, ttl, self._decode)


class SyncNode:
    """A :class:`~shoal.node.Node` running on its own event-loop thread.

    Use it as a context manager, or call :meth:`start` and :meth:`close`.

    **Fork.** A node's event loop runs in a thread, and a thread does not survive
    ``os.fork()``: in the child of a fork (gunicorn ``--preload``, multiprocessing's
    ``fork``) a node started before it refuses every call, hits included, with a
    :class:`~shoal.errors.ShoalError` saying to start the node after the fork (it
    is not rebuilt there: its ports, peers and cached values belong to the parent,
    which keeps serving with them). Start a node in each worker (gunicorn's
    ``post_fork`` hook, an ASGI lifespan), or run one node per host and use
    :class:`~shoal.sync_client.SyncClient` in the workers. A node made but not yet
    started before the fork starts normally in the child.

    Args:
        config: the node's configuration.
    """

    def __init__(self, config: NodeConfig | None = None) -> None:
        self._node = Node(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._forked = False
        self._facades: weakref.WeakSet[SyncGroup[Any]] = weakref.WeakSet()
        _NODES.add(self)

    @property
    def node(self) -> Node:
        """The async node behind this facade."""
        return self._node

    def start(self) -> Self:
        """Start the event-loop thread and the node; return once the node is serving.

        Raises:
            Exception: whatever the node's start raised (e.g. the API port is taken).
        """
        if self._forked:
            raise ShoalError(FORKED_MESSAGE)
        if self._thread is not None:
            raise RuntimeError("the node is already started")
        ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name="shoal-node", daemon=True
        )
        self._thread.start()
        try:
            ready.result()
        except BaseException:
            self._thread.join()
            self._thread = None
            raise
        return self

    def close(self) -> None:
        """Close the node and stop its thread (idempotent). In the child of a fork,
        only forgets the parent's node (the parent's loop is not touched)."""
        if self._forked:
            self._thread = None
            return
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or loop is None or stop is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def group(
        self,
        name: str,
        loader: Loader[Any] | None = None,
        *,
        codec: str | Codec[Any] | None = None,
        **options: Any,
    ) -> SyncGroup[Any]:
        """Create a group (see :meth:`Node.group <shoal.node.Node.group>`) and return its facade."""
        if self._forked:
            raise ShoalError(FORKED_MESSAGE)
        return self._facade(SyncGroup(self._node.group(name, loader, codec=codec, **options)))

    def get_group(self, name: str) -> SyncGroup[Any]:
        """The facade of an existing group (raises GroupNotFound)."""
        if self._forked:
            raise ShoalError(FORKED_MESSAGE)
        return self._facade(SyncGroup(self._node.get_group(name)))

    def _facade(self, facade: SyncGroup[Any]) -> SyncGroup[Any]:
        self._facades.add(facade)
        return facade

    def _after_fork_in_child(self) -> None:
        if self._thread is None or self._loop is None:
            return  # never started: the child may start it
        self._forked = True
        mark_forked(self._loop)
        for facade in list(self._facades):
            facade._forked()

    def _serve(self, ready: Future[None]) -> None:
        loop = new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(ready))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self, ready: Future[None]) -> None:
        self._stop = asyncio.Event()
        try:
            await self._node.start()
        except BaseException as exc:
            ready.set_exception(exc)
            await self._node.aclose()
            return
        ready.set_result(None)
        try:
            await self._stop.wait()
        finally:
            await self._node.aclose()


_NODES: weakref.WeakSet[SyncNode] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for node in list(_NODES):
        node._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
