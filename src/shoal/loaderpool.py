"""The threads that run synchronous loaders: a hung loader cannot hold them hostage.

A thread cannot be killed in Python, so a sync loader that never returns keeps
its thread forever. :class:`LoaderPool` is an :class:`~concurrent.futures.Executor`
that keeps such a loader from taking the node down with it:

* **Abandoning.** When the caller of a load gives up on it (its
  ``load_timeout`` expired, or it was cancelled), the group calls
  :meth:`LoaderPool.abandon`: the thread is left to finish on its own and no
  longer counts against the pool's ``threads``; a replacement starts when work
  waits. At most ``max_abandoned`` threads are abandoned at once (a hard bound
  on the threads alive); beyond it a stuck thread keeps its place in the pool.
  An abandoned thread that finally returns ends.
* **Shares.** While more than one group runs sync loads (see
  :meth:`LoaderPool.register`), each may hold at most
  ``share`` of the threads (at least one), so a group whose loaders hang leaves
  threads to the others; waiting work is taken group by group, in turn.
* **Shutdown never waits.** The threads are daemon threads and
  :meth:`shutdown` joins none of them, so a process exits even with a loader
  stuck in a system call.

Threads start on demand and stay until shutdown. The pool knows nothing of
asyncio: :meth:`run` returns a :class:`concurrent.futures.Future`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor as _Executor
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final, TypeVar

__all__ = ["LoaderPool"]

log = logging.getLogger("shoal.loaders")

T = TypeVar("T")

DEFAULT_SHARE: Final = 0.75
"""The fraction of the threads one group may hold while other groups run sync loads."""
_ANONYMOUS: Final = ""
"""The owner of work submitted through the plain :class:`Executor` API."""


@dataclass(slots=True, eq=False)
class _Work:
    owner: str
    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    worker: _Worker | None = None


@dataclass(slots=True, eq=False)
class _Worker:
    abandoned: bool = False


class LoaderPool(_Executor):
    """A thread pool for sync loaders with per-group shares and abandoned threads.

    Args:
        threads: threads that run loads at once (not counting abandoned ones).
        share: the fraction of ``threads`` one group may hold while other groups
            run sync loads too.
        max_abandoned: threads abandoned at once at most; default ``3 * threads``.
        thread_name_prefix: the threads' names.
    """

    def __init__(
        self,
        threads: int,
        *,
        share: float = DEFAULT_SHARE,
        max_abandoned: int | None = None,
        thread_name_prefix: str = "shoal-loader",
    ) -> None:
        if threads < 1:
            raise ValueError(f"a loader pool needs at least one thread, got {threads}")
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self._threads = threads
        self._share = max(1, int(threads * share))
        self._max_abandoned = 3 * threads if max_abandoned is None else max_abandoned
        self._prefix = thread_name_prefix
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queues: dict[str, deque[_Work]] = {}
        self._turns: deque[str] = deque()  # owners with queued work, in turn
        self._busy: dict[str, int] = {}  # owner -> threads running its work (not abandoned)
        self._owners: set[str] = set()
        self._running: dict[Future[Any], _Work] = {}
        self._queued: dict[Future[Any], _Work] = {}
        self._live = 0  # threads not abandoned
        self._idle = 0
        self._abandoned = 0
        self._abandoned_total = 0
        self._started = 0
        self._closed = False
        self._full_logged = False

    def __repr__(self) -> str:
        return f"<LoaderPool threads={self._threads} {self.statistics()}>"

    # -- the executor ---------------------------------------------------------

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` in a thread (as work of no group)."""
        return self._submit(_ANONYMOUS, fn, args, kwargs)

    def register(self, owner: str) -> None:
        """Count ``owner`` among the groups that run sync loads here from now on (a
        group with a sync loader registers when it is made; any other group when it
        first runs one), so the shares hold before its first load."""
        with self._lock:
            self._owners.add(owner)

    def run(self, owner: str, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        """Run ``fn(*args)`` in a thread as work of the group ``owner`` (its share).

        Raises:
            RuntimeError: the pool is shut down.
        """
        return self._submit(owner, fn, args, {})

    def abandon(self, future: Future[Any]) -> bool:
        """The caller gave up on ``future``: cancel it if it has not started; if it
        runs, stop counting its thread against the pool (a replacement starts when
        work waits), unless ``max_abandoned`` threads are abandoned already.

        Returns:
            True if the future was cancelled or its thread abandoned.
        """
        with self._lock:
            work = self._queued.pop(future, None)
            if work is not None:
                queue = self._queues[work.owner]
                queue.remove(work)
                if not queue:
                    self._turns.remove(work.owner)
                future.cancel()
                return True
            work = self._running.get(future)
            if work is None or work.worker is None or work.worker.abandoned or future.done():
                return False
            if self._abandoned >= self._max_abandoned:
                if not self._full_logged:
                    self._full_logged = True
                    log.error(
                        "%d loader threads are stuck in loaders that never returned; "
                        "no more are replaced, so the pool shrinks",
                        self._abandoned,
                    )
                return False
            work.worker.abandoned = True
            self._busy[work.owner] -= 1
            self._live -= 1
            self._abandoned += 1
            self._abandoned_total += 1
            self._dispatch()
            return True

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new work; with ``cancel_futures``, cancel the work not started.

        Threads end when their current load returns. ``wait`` is accepted for the
        Executor API and ignored: a hung loader would make it wait forever.
        """
        with self._lock:
            self._closed = True
            if cancel_futures:
                for queue in self._queues.values():
                    for work in queue:
                        work.future.cancel()
                    queue.clear()
                self._turns.clear()
                self._queued.clear()
            self._ready.notify_all()

    def statistics(self) -> dict[str, int]:
        """``threads`` alive, ``busy`` (running a load, not abandoned), ``queued``
        loads, ``abandoned`` threads still stuck, and ``abandoned_total``."""
        with self._lock:
            return {
                "threads": self._live + self._abandoned,
                "busy": sum(self._busy.values()),
                "queued": sum(len(q) for q in self._queues.values()),
                "abandoned": self._abandoned,
                "abandoned_total": self._abandoned_total,
            }

    # -- internals (under the lock unless said otherwise) ----------------------

    def _submit(
        self, owner: str, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the loader pool is shut down")
            self._owners.add(owner)
            queue = self._queues.setdefault(owner, deque())
            if not queue:
                self._turns.append(owner)
            work = _Work(owner, future, fn, args, kwargs)
            queue.append(work)
            self._queued[future] = work
            self._dispatch()
        return future

    def _limit(self) -> int:
        """Threads one group may hold: all of them while it is the only one."""
        return self._threads if len(self._owners) <= 1 else self._share

    def _dispatch(self) -> None:
        """Wake idle threads, and start more, for the waiting work that may run now."""
        if self._closed:
            return
        wanted = self._takeable()
        if not wanted:
            return
        self._ready.notify(wanted)
        while wanted > self._idle and self._live < self._threads:
            self._live += 1
            self._idle += 1  # counted idle until it takes its first work
            self._started += 1
            thread = threading.Thread(
                target=self._work_forever,
                name=f"{self._prefix}-{self._started}",
                daemon=True,
            )
            thread.start()

    def _takeable(self) -> int:
        """How many waiting loads threads may take now (each group within its share)."""
        limit = self._limit()
        return sum(
            min(len(self._queues[owner]), max(0, limit - self._busy.get(owner, 0)))
            for owner in self._turns
        )

    def _take(self) -> _Work | None:
        """The next work a thread may run: groups in turn, each within its share."""
        limit = self._limit()
        for _ in range(len(self._turns)):
            owner = self._turns[0]
            self._turns.rotate(-1)
            if self._busy.get(owner, 0) >= limit:
                continue
            queue = self._queues[owner]
            work = queue.popleft()
            del self._queued[work.future]
            if not queue:
                self._turns.remove(owner)
            return work
        return None

    def _work_forever(self) -> None:
        """A thread's life (outside the lock but for its bookkeeping)."""
        worker = _Worker()
        with self._lock:
            while True:
                work = self._take()
                if work is None:
                    if self._closed:
                        self._idle -= 1
                        self._live -= 1
                        return
                    self._ready.wait()
                    continue
                if not work.future.set_running_or_notify_cancel():
                    continue  # cancelled while it waited
                self._idle -= 1
                self._busy[work.owner] = self._busy.get(work.owner, 0) + 1
                work.worker = worker
                self._running[work.future] = work
                self._lock.release()
                try:
                    _call(work)
                finally:
                    self._lock.acquire()
                    del self._running[work.future]
                if worker.abandoned:
                    self._abandoned -= 1
                    self._dispatch()
                    return  # the pool has replaced this thread already
                self._busy[work.owner] -= 1
                self._idle += 1
                self._dispatch()  # a share freed: work of that group may be takeable


def _call(work: _Work) -> None:
    try:
        result = work.fn(*work.args, **work.kwargs)
    except BaseException as exc:
        work.future.set_exception(exc)
    else:
        work.future.set_result(result)
