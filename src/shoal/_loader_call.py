"""Calling a group's loader: async on the loop, sync in the loader threads, within ``load_timeout``.

Rules: the call is bounded by ``load_timeout`` (:class:`~shoal.errors.LoadTimeout`;
a loader's own ``TimeoutError`` passes unchanged); a sync loader that outlives
its caller is abandoned in the :class:`~shoal.loaderpool.LoaderPool`, so it
holds no thread; a ``BaseException`` from user code that is not cancellation
becomes :class:`~shoal.errors.LoadError` (it must release the waiters, not tear
down the event loop), and so does a loader that returns None.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from .errors import LoadError, LoadTimeout
from .loaderpool import LoaderPool

__all__ = ["call_loader", "is_async"]


def is_async(fn: Callable[..., Any]) -> bool:
    """True for coroutine functions, including async ``__call__`` methods and partials."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


async def call_loader(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    *,
    key: str,
    group: str,
    load_timeout: float,
    executor: Executor | None,
) -> Any:
    """``fn(*args)``'s result, loading ``key`` of ``group`` (see the module docstring).

    Raises:
        LoadTimeout: longer than ``load_timeout``. LoadError: a result of None, or
            a ``BaseException`` that is neither an ``Exception`` nor cancellation.
        Exception: whatever ``fn`` raised, unchanged.
    """
    deadline = asyncio.timeout(load_timeout)
    try:
        async with deadline:
            if is_async(fn):
                result = await fn(*args)
            else:
                result = await _in_thread(executor, group, fn, args)
                if inspect.isawaitable(result):  # a sync callable that returned an awaitable
                    result = await result
    except TimeoutError as exc:
        if not deadline.expired():  # the loader's own TimeoutError: pass it on unchanged
            raise
        raise LoadTimeout(
            f"loading {key!r} in group {group!r} took longer than {load_timeout}s"
        ) from exc
    except (Exception, asyncio.CancelledError):
        raise
    except BaseException as exc:
        # KeyboardInterrupt, SystemExit or a custom BaseException from user code must
        # release the waiters, not tear down the event loop.
        raise LoadError(f"loader for group {group!r} raised {type(exc).__name__}") from exc
    if result is None:
        raise LoadError(
            f"loader for group {group!r} returned None for {key!r}; "
            "raise NotFound for a missing key"
        )
    return result


async def _in_thread(
    pool: Executor | None, group: str, fn: Callable[..., Any], args: tuple[Any, ...]
) -> Any:
    """Run a sync loader in the node's loader threads; one that outlives its caller
    (timed out, cancelled) is abandoned there, so it holds no thread of the pool."""
    # In a copy of the caller's context (as asyncio.to_thread): what the flight's
    # caller set there (a trace's current span) is seen by the loader.
    run = contextvars.copy_context().run
    if not isinstance(pool, LoaderPool):
        return await asyncio.get_running_loop().run_in_executor(pool, run, fn, *args)
    work = pool.run(group, run, fn, *args)
    try:
        return await asyncio.wrap_future(work)
    except BaseException:
        pool.abandon(work)  # given up on: dequeued if waiting, abandoned if running
        raise
