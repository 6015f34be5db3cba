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
* A load may also run without a task (:meth:`Flight.join`'s ``direct``): a
  function that starts the work and settles the call from a callback later
  (:meth:`Flight.settle`), or hands it to a task after all (:meth:`Flight.run`).
  A fetch from a peer is mostly waiting for one answer, and a task with its
  coroutine chain costs more than the rest of the fetch.
* :meth:`Flight.aclose` cancels whatever still runs; its waiters get
  :class:`~shoal.errors.Closed` rather than hanging.

Not thread-safe: use it from the event loop that owns it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar, cast

from .errors import Closed

__all__ = ["Flight", "Call"]

T = TypeVar("T")


class Call(Generic[T]):
    """One running load of one key."""

    __slots__ = ("cancel", "fenced", "key", "settled", "task", "waiters")

    def __init__(self, key: str) -> None:
        self.key = key
        self.fenced = False
        """True once a write or delete of the key made this load's result stale."""
        self.task: asyncio.Task[T] | None = None
        """The task running the load; None while a direct load runs without one."""
        self.cancel: Callable[[], object] | None = None
        """How :meth:`Flight.aclose` stops a direct load (set by its starter)."""
        self.settled = False
        """True once the waiters have the outcome."""
        self.waiters: list[asyncio.Future[T]] = []


class Flight(Generic[T]):
    """Deduplicates concurrent loads by key."""

    __slots__ = ("_calls", "_closed", "_direct", "_loop", "_tasks", "started")

    def __init__(self) -> None:
        self._calls: dict[str, Call[T]] = {}
        self._tasks: set[asyncio.Task[T]] = set()  # fenced ones too, until they finish
        self._direct: set[Call[T]] = set()  # calls running without a task (fenced too)
        self._closed = False
        # The loop of the last call, asked again only once it stops running:
        # asyncio.get_running_loop() checks for a fork with a getpid() system call
        # (CPython 3.11), which a join from a callback would pay on every call. The
        # flight belongs to one loop at a time (see the module docstring).
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = 0
        """Loads actually started (callers that joined a running load not counted)."""

    def __len__(self) -> int:
        """Keys with a load in flight (fenced loads not counted)."""
        return len(self._calls)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop of the latest call (None before the first)."""
        return self._loop

    def running(self, key: str) -> bool:
        """Whether an unfenced load of ``key`` is in flight."""
        return key in self._calls

    async def do(
        self,
        key: str,
        fn: Callable[[Call[T]], Coroutine[Any, Any, T]],
        direct: Callable[[Call[T]], bool] | None = None,
    ) -> T:
        """Return the result of ``fn(call)``, run once for all concurrent callers of ``key``.

        Raises:
            Closed: if the flight is closed, or was closed while the load ran.
            BaseException: whatever ``fn`` raised, the same object for every waiter.
        """
        return await self.join(key, fn, direct)

    def join(
        self,
        key: str,
        fn: Callable[[Call[T]], Coroutine[Any, Any, T]],
        direct: Callable[[Call[T]], bool] | None = None,
    ) -> asyncio.Future[T]:
        """Like :meth:`do`, but return the caller's own future at once instead of
        waiting on it (for callers that continue in a callback rather than a task).
        Cancelling the future cancels only this caller's wait.

        ``direct(call)``, when given, is offered a new load first: it returns True
        when it took the load on without a task (it then ends it with
        :meth:`settle`, or hands it to :meth:`run`; it must not settle before it
        returns), False to have ``fn(call)`` run in a task as usual.

        Must be called from the event loop that owns the flight.

        Raises:
            Closed: the flight is closed.
        """
        call = self._calls.get(key)
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        if call is not None:
            call.waiters.append(waiter)
            return waiter
        if self._closed:
            raise Closed("the group is closed")
        call = Call(key)
        call.waiters.append(waiter)
        self._calls[key] = call
        self.started += 1
        if direct is not None and direct(call):
            self._direct.add(call)
        else:
            self._spawn(call, fn(call))
        return waiter

    def start(self, key: str, fn: Callable[[Call[T]], Coroutine[Any, Any, T]]) -> bool:
        """Start ``fn(call)`` for ``key`` unless a load of it is running; wait for nothing.

        The outcome goes to the callers that join meanwhile (and is otherwise
        dropped). Returns whether a load was started.

        Must be called from the event loop that owns the flight.
        """
        if key in self._calls or self._closed:
            return False
        self._loop = asyncio.get_running_loop()
        call: Call[T] = Call(key)
        self._calls[key] = call
        self.started += 1
        self._spawn(call, fn(call))
        return True

    def run(self, call: Call[T], coro: Coroutine[Any, Any, T]) -> None:
        """Finish a direct call (see :meth:`join`) in a task running ``coro``.

        On a closed flight the coroutine is dropped and the waiters get Closed.
        """
        self._direct.discard(call)
        if self._closed:
            coro.close()
            self.settle(call, error=Closed("the group was closed while loading"))
            return
        self._spawn(call, coro)

    def settle(
        self, call: Call[T], result: T | None = None, error: BaseException | None = None
    ) -> None:
        """Give a direct call's outcome to its waiters: ``error`` if not None, else
        ``result``. Later settles of the same call do nothing."""
        self._direct.discard(call)
        if call.settled:
            return
        call.settled = True
        call.cancel = None  # it may refer back to the call (a cycle for the GC)
        if self._calls.get(call.key) is call:
            del self._calls[call.key]
        for waiter in call.waiters:
            if waiter.done():  # its caller was cancelled
                continue
            if error is None:
                waiter.set_result(cast(T, result))
            else:
                waiter.set_exception(error)
        call.waiters.clear()

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
        direct, self._direct = self._direct, set()
        for call in direct:
            if call.cancel is not None:
                call.cancel()
            self.settle(call, error=Closed("the group was closed while loading"))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, call: Call[T], coro: Coroutine[Any, Any, T]) -> None:
        assert self._loop is not None
        task = call.task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished(call))

    def _finished(self, call: Call[T]) -> Callable[[asyncio.Task[T]], None]:
        def done(task: asyncio.Task[T]) -> None:
            self._tasks.discard(task)
            # Reading the outcome also marks it retrieved: with every waiter gone,
            # asyncio would otherwise log "exception was never retrieved".
            if task.cancelled():
                self.settle(call, error=Closed("the group was closed while loading"))
            else:
                error = task.exception()
                self.settle(call, None if error is not None else task.result(), error)

        return done
