"""Singleflight: at most one load per key at a time, shared by every caller.

Rules (DESIGN §4.2):

* The load runs in a task owned by the :class:`Flight`, never by the caller
  that happened to start it. Each caller waits on a future of its own, which
  the task's completion fills, so a cancelled caller (the first one included)
  cancels only its own wait. (One plain future per waiter, not one
  ``asyncio.shield`` each: a shield costs a future and two callbacks more,
  which is what a stampede of 10,000 waiters feels.)
* Every waiter gets the same value or the same exception.
* A call can be *fenced* (a write or delete of the key happened while it ran):
  it is detached at once, so later callers start a fresh load, and the running
  function can check :attr:`Call.fenced` before caching its result.
* :meth:`Flight.aclose` cancels whatever still runs; its waiters get
  :class:`~shoal.errors.Closed` rather than hanging.

Not thread-safe: use it from the event loop that owns it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from .errors import Closed

__all__ = ["Flight", "Call"]

T = TypeVar("T")


class Call(Generic[T]):
    """One running load of one key."""

    __slots__ = ("fenced", "key", "task", "waiters")

    def __init__(self, key: str) -> None:
        self.key = key
        self.fenced = False
        """True once a write or delete of the key made this load's result stale."""
        self.task: asyncio.Task[T]
        self.waiters: list[asyncio.Future[T]] = []


class Flight(Generic[T]):
    """Deduplicates concurrent loads by key."""

    __slots__ = ("_calls", "_closed", "_loop", "_tasks", "started")

    def __init__(self) -> None:
        self._calls: dict[str, Call[T]] = {}
        self._tasks: set[asyncio.Task[T]] = set()  # fenced ones too, until they finish
        self._closed = False
        # The loop of the last call. asyncio.get_running_loop() checks for a fork
        # with a getpid() system call; current_task(loop) is a dict lookup.
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = 0
        """Loads actually started (callers that joined a running load not counted)."""

    def __len__(self) -> int:
        """Keys with a load in flight (fenced loads not counted)."""
        return len(self._calls)

    def running(self, key: str) -> bool:
        """Whether an unfenced load of ``key`` is in flight."""
        return key in self._calls

    async def do(self, key: str, fn: Callable[[Call[T]], Coroutine[Any, Any, T]]) -> T:
        """Return the result of ``fn(call)``, run once for all concurrent callers of ``key``.

        Raises:
            Closed: if the flight is closed, or was closed while the load ran.
            BaseException: whatever ``fn`` raised, the same object for every waiter.
        """
        return await self.join(key, fn)

    def join(self, key: str, fn: Callable[[Call[T]], Coroutine[Any, Any, T]]) -> asyncio.Future[T]:
        """Like :meth:`do`, but return the caller's own future at once instead of
        waiting on it (for callers that continue in a callback rather than a task).
        Cancelling the future cancels only this caller's wait.

        Must be called from the event loop that owns the flight.

        Raises:
            Closed: the flight is closed.
        """
        call = self._calls.get(key)
        loop = self._loop
        if loop is None or asyncio.current_task(loop) is None:
            loop = self._loop = asyncio.get_running_loop()
        if call is None:
            if self._closed:
                raise Closed("the group is closed")
            call = Call(key)
            call.task = loop.create_task(fn(call))
            self._calls[key] = call
            self._tasks.add(call.task)
            call.task.add_done_callback(self._finished(call))
            self.started += 1
        waiter: asyncio.Future[T] = loop.create_future()
        call.waiters.append(waiter)
        return waiter

    def start(self, key: str, fn: Callable[[Call[T]], Coroutine[Any, Any, T]]) -> bool:
        """Start ``fn(call)`` for ``key`` unless a load of it is running; wait for nothing.

        The outcome goes to the callers that join meanwhile (and is otherwise
        dropped). Returns whether a load was started.

        Must be called from the event loop that owns the flight.
        """
        if key in self._calls or self._closed:
            return False
        loop = self._loop = asyncio.get_running_loop()
        call: Call[T] = Call(key)
        call.task = loop.create_task(fn(call))
        self._calls[key] = call
        self._tasks.add(call.task)
        call.task.add_done_callback(self._finished(call))
        self.started += 1
        return True

    def fence(self, key: str) -> bool:
        """Mark the load of ``key`` stale and detach it; return whether one was running."""
        call = self._calls.pop(key, None)
        if call is None:
            return False
        call.fenced = True
        return True

    def fence_all(self) -> int:
        """Fence every running load (see :meth:`fence`); return how many there were."""
        calls, self._calls = self._calls, {}
        for call in calls.values():
            call.fenced = True
        return len(calls)

    async def aclose(self) -> None:
        """Cancel every running load and wait until they have finished."""
        self._closed = True
        self._calls.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, call: Call[T]) -> Callable[[asyncio.Task[T]], None]:
        def done(task: asyncio.Task[T]) -> None:
            self._tasks.discard(task)
            if self._calls.get(call.key) is call:
                del self._calls[call.key]
            # Reading the outcome also marks it retrieved: with every waiter gone,
            # asyncio would otherwise log "exception was never retrieved".
            error: BaseException | None
            if task.cancelled():
                error = Closed("the group was closed while loading")
            else:
                error = task.exception()
            for waiter in call.waiters:
                if waiter.done():  # its caller was cancelled
                    continue
                if error is None:
                    waiter.set_result(task.result())
                else:
                    waiter.set_exception(error)
            call.waiters.clear()

        return done
