"""The pieces of ``@cached`` shared by :class:`~shoal.group.Group` and the sync facade.

:func:`default_key` builds a cache key from a call's arguments;
:func:`run_blocking` runs a coroutine on the group's loop and blocks the calling
thread for it; :func:`blocking_wrapper` is the blocking form of a function read
through a group (a hit in the calling thread, a miss filled once per key on the
loop). Rules: stdlib only, no state; the group is seen through
:class:`_Fillable`, so this module sits below both ``group.py`` and ``sync.py``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar, cast

from .errors import Closed, ShoalError
from .value import with_ttl

__all__ = ["blocking_wrapper", "default_key", "get_or_load_blocking", "run_blocking"]

T = TypeVar("T")


class _Fillable(Protocol):
    """What a blocking wrapper needs of its group."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the group runs on, once known."""
        ...

    def cached_bytes(self, key: str) -> bytes | None:
        """The cached bytes of ``key``, or None (never awaits; thread-safe)."""
        ...

    def get_or_load(self, key: str, filler: Callable[[], Any]) -> Coroutine[Any, Any, Any]:
        """The value of ``key``, filled by ``filler`` on a miss (once per key)."""
        ...


def default_key(fn: Callable[..., Any], limit: int) -> Callable[..., str]:
    """Key builder of ``cached``: qualified name + ``repr`` of the arguments.

    A key that would exceed ``limit`` bytes becomes the (trimmed) name plus a
    128-bit BLAKE2 digest of the full key, so long arguments still cache.
    """
    prefix = f"{fn.__module__}.{fn.__qualname__}"
    short = prefix.encode()[: max(0, limit - 33)].decode(errors="ignore")

    def make_key(*args: Any, **kwargs: Any) -> str:
        key = f"{prefix}{args!r}{sorted(kwargs.items())!r}" if kwargs else f"{prefix}{args!r}"
        encoded = key.encode()
        if len(encoded) > limit:
            key = f"{short}#{hashlib.blake2b(encoded, digest_size=16).hexdigest()}"
        return key

    return make_key


FORKED_MESSAGE = (
    "this shoal SyncNode was started before os.fork(): its event-loop thread and "
    "sockets belong to the parent process. Start the node after the fork, in each "
    "worker (gunicorn's post_fork hook, an ASGI lifespan), or start one node per host "
    "and use shoal.SyncClient in the workers"
)
"""What a call through a SyncNode started before a fork raises in the child."""

_FORKED_LOOPS: set[asyncio.AbstractEventLoop] = set()


def mark_forked(loop: asyncio.AbstractEventLoop) -> None:
    """In a forked child: ``loop`` runs in the parent only; blocking calls on it refuse."""
    _FORKED_LOOPS.add(loop)


def run_blocking(loop: asyncio.AbstractEventLoop | None, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on ``loop`` and block the calling thread for its result.

    Raises:
        Closed: the loop is not running.
        RuntimeError: called on the loop's own thread.
        ShoalError: the loop runs in the parent of this forked process.
    """
    if loop is None or loop.is_closed():
        coro.close()
        raise Closed("the group's event loop is not running; start its node first")
    if _FORKED_LOOPS and loop in _FORKED_LOOPS:
        coro.close()
        raise ShoalError(FORKED_MESSAGE)
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError(
            "a blocking shoal call was made on the event loop's own thread; use the async API"
        )
    hop: _Hop[T] = _Hop(loop, coro)
    loop.call_soon_threadsafe(hop.start)
    return hop.wait()


class _Hop(Generic[T]):
    """One coroutine run on the loop for a waiting thread: a task, and a plain lock the
    thread blocks on until the task is done.

    Lighter than ``run_coroutine_threadsafe``: no ``concurrent.futures.Future`` (a
    condition variable and its own lock) chained to the task by two more callbacks.
    """

    __slots__ = ("_coro", "_done", "_loop", "_task")

    def __init__(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> None:
        self._loop = loop
        self._coro: Coroutine[Any, Any, T] | None = coro
        self._task: asyncio.Task[T] | None = None
        self._done = threading.Lock()
        self._done.acquire()

    def start(self) -> None:
        """On the loop: start the task (unless the waiter gave up first)."""
        coro, self._coro = self._coro, None
        if coro is None:
            return
        try:
            task = self._loop.create_task(coro)
        except BaseException:
            coro.close()
            self._done.release()
            raise
        self._task = task
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[T]) -> None:
        self._done.release()

    def wait(self) -> T:
        """In the calling thread: block until the task is done; its result or error."""
        try:
            self._done.acquire()
        except BaseException:  # e.g. KeyboardInterrupt in the waiting thread
            self._loop.call_soon_threadsafe(self._cancel)
            raise
        task = self._task
        if task is None:
            raise Closed("the group's event loop could not start the call")
        return task.result()

    def _cancel(self) -> None:
        coro, self._coro = self._coro, None
        if coro is not None:
            coro.close()
        elif self._task is not None:
            self._task.cancel()


def get_or_load_blocking(
    group: _Fillable,
    key: str,
    filler: Callable[[], Any],
    decode: Callable[[bytes], Any] | None,
) -> Any:
    """The value of ``key``: a hit served in the calling thread, a miss filled by
    ``filler()`` through ``group.get_or_load`` on the group's loop (once per key,
    however many threads ask), the calling thread waiting for it.

    Args:
        decode: the group's codec's decode; None for bytes values.
    """
    data = group.cached_bytes(key)
    if data is None:
        return run_blocking(group.loop, group.get_or_load(key, filler))
    return data if decode is None else decode(data)


def blocking_wrapper(
    group: _Fillable,
    fn: Callable[..., T],
    make_key: Callable[..., str],
    ttl: float | None,
    decode: Callable[[bytes], Any] | None,
) -> Callable[..., T]:
    """A blocking wrapper of ``fn`` that caches its results in ``group`` under
    ``make_key(...)``: a hit is served in the calling thread; a miss runs ``fn`` once
    per key in the group's loader threads, however many threads ask at once.

    Args:
        decode: the group's codec's decode; None for bytes values.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        def fill() -> Any:
            return with_ttl(fn(*args, **kwargs), ttl)

        return cast(T, get_or_load_blocking(group, make_key(*args, **kwargs), fill, decode))

    return wrapper
