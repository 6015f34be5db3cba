"""Deadlines: timeouts of one fixed duration for many concurrent waits, on one timer.

``asyncio.timeout`` costs, per wait, a timer handle (on uvloop a libuv timer
made, started, stopped and closed) and two running-loop lookups (each a
``getpid`` system call in CPython's check for a forked process). On a hot
path that runs thousands of times a second with the same duration (a
group's ``peer_timeout``, a server's ``request_timeout``) that is a good
part of the cost of the wait itself.

With a fixed duration, deadlines come due in the order the waits began, so a
FIFO queue and a single timer armed for its head do the job: entering a
scope appends to the queue (after dropping the finished scopes at its head),
leaving it marks the scope done and lets go of its task, and the timer
callback drops finished scopes and cancels the task of each expired one. The
queue holds about as many scopes as there are waits in progress (a finished
one lingers only behind an older one still waiting), and the timer fires
about once per ``duration`` while waits keep finishing in time.

Semantics are those of ``asyncio.timeout``: the task is cancelled at the
deadline and the scope turns that cancellation into :class:`TimeoutError`
(chained to the ``CancelledError``); a cancellation from elsewhere passes
through unchanged. Scopes are synchronous context managers (no coroutine
per enter and exit); use them inside a coroutine, around awaits of the task
that entered them.

Not thread-safe: one :class:`Deadlines` belongs to one event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType

__all__ = ["Deadlines", "Watch"]


class _Scope:
    """One wait under a :class:`Deadlines`; see the module docstring."""

    __slots__ = ("_cancelling", "_deadlines", "_task", "done", "expired", "when")

    def __init__(self, deadlines: Deadlines, task: asyncio.Task[object], when: float) -> None:
        self._deadlines = deadlines
        self._task: asyncio.Task[object] | None = task
        self._cancelling = task.cancelling()
        self.when = when
        self.done = False
        self.expired = False

    def __enter__(self) -> _Scope:
        self._deadlines._add(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.done = True
        task, self._task = self._task, None  # a finished scope keeps nothing alive
        # As asyncio.timeout: take back the cancellation this scope requested; it
        # becomes a TimeoutError unless someone else also asked to cancel the task.
        if (
            self.expired
            and task is not None
            and task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc

    def cancel(self) -> None:
        """The deadline passed: cancel the task (the timer calls this)."""
        if self._task is not None:
            self.expired = True
            self._task.cancel()


class Watch:
    """A deadline for a wait that is not a task: the timer calls ``on_expire()`` at
    the deadline unless the waiter set :attr:`done` first (see :meth:`Deadlines.watch`)."""

    __slots__ = ("_on_expire", "done", "when")

    def __init__(self, on_expire: Callable[[], object], when: float) -> None:
        self._on_expire = on_expire
        self.when = when
        self.done = False
        """Set it when the wait is over: the timer then drops the watch."""

    def cancel(self) -> None:
        """The deadline passed (the timer calls this)."""
        if not self.done:
            self.done = True
            self._on_expire()


class Deadlines:
    """Hands out timeout scopes of ``duration`` seconds on ``loop``.

    Args:
        duration: seconds each scope lasts; positive.
        loop: the event loop of the tasks that will enter the scopes.
    """

    __slots__ = ("_queue", "_timer", "duration", "loop")

    def __init__(self, duration: float, loop: asyncio.AbstractEventLoop) -> None:
        if not duration > 0:
            raise ValueError(f"duration must be positive, got {duration!r}")
        self.duration = duration
        self.loop = loop
        self._queue: deque[_Scope | Watch] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def scope(self) -> _Scope | None:
        """A scope for the current task (``with deadlines.scope(): await ...``), or None
        when no task of :attr:`loop` is running here (a caller on another loop then
        falls back to ``asyncio.timeout``)."""
        loop = self.loop
        task = asyncio.current_task(loop)  # with the loop given: no running-loop lookup
        if task is None:
            return None
        return _Scope(self, task, loop.time() + self.duration)

    def watch(self, on_expire: Callable[[], object]) -> Watch:
        """A deadline ``duration`` seconds from now for a wait that continues in a
        callback rather than a task: ``on_expire()`` runs then, unless the waiter
        set the watch's ``done`` first (no timer handle per wait)."""
        watch = Watch(on_expire, self.loop.time() + self.duration)
        self._add(watch)
        return watch

    def __len__(self) -> int:
        """Scopes queued (entered and not yet dropped by the timer)."""
        return len(self._queue)

    def _add(self, scope: _Scope | Watch) -> None:
        queue = self._queue
        while queue and queue[0].done:
            queue.popleft()
        queue.append(scope)
        if self._timer is None:
            self._timer = self.loop.call_at(scope.when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        queue = self._queue
        now = self.loop.time()
        while queue:
            scope = queue[0]
            if scope.done:
                queue.popleft()
            elif scope.when <= now:
                queue.popleft()
                scope.cancel()
            else:
                # Timers may fire a little early: the head decides when to look again.
                self._timer = self.loop.call_at(scope.when, self._fire)
                return
