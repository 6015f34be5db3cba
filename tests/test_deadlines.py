"""Deadlines: asyncio.timeout's semantics for many waits of one duration, on one timer."""

from __future__ import annotations

import asyncio
import gc

import pytest

from shoal._deadlines import Deadlines


async def test_a_wait_that_ends_in_time_is_untouched() -> None:
    """The awaited result comes back; the scope is done and not expired."""
    deadlines = Deadlines(5.0, asyncio.get_running_loop())
    scope = deadlines.scope()
    assert scope is not None
    with scope:
        await asyncio.sleep(0)
    assert scope.done
    assert not scope.expired


async def test_an_expired_wait_raises_timeout_error() -> None:
    """At the deadline the task is cancelled, and the scope turns that into
    TimeoutError, chained to the CancelledError."""
    deadlines = Deadlines(0.02, asyncio.get_running_loop())
    never = asyncio.Event()
    scope = deadlines.scope()
    assert scope is not None
    with pytest.raises(TimeoutError) as caught, scope:
        await never.wait()
    assert isinstance(caught.value.__cause__, asyncio.CancelledError)
    assert scope.expired
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_many_waits_share_one_timer_and_each_expires() -> None:
    """Waits entered one after the other all time out, each at its own deadline."""
    deadlines = Deadlines(0.02, asyncio.get_running_loop())
    never = asyncio.Event()

    async def wait() -> str:
        scope = deadlines.scope()
        assert scope is not None
        try:
            with scope:
                await never.wait()
        except TimeoutError:
            return "timeout"
        return "done"

    tasks = []
    for _ in range(5):
        tasks.append(asyncio.create_task(wait()))
        await asyncio.sleep(0.005)
    assert await asyncio.gather(*tasks) == ["timeout"] * 5


async def test_a_cancellation_from_elsewhere_is_not_a_timeout() -> None:
    """A task cancelled by someone else before the deadline sees CancelledError."""
    deadlines = Deadlines(5.0, asyncio.get_running_loop())
    started = asyncio.Event()

    async def wait() -> None:
        scope = deadlines.scope()
        assert scope is not None
        with scope:
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(wait())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_finished_scopes_are_dropped_and_keep_nothing_alive() -> None:
    """The queue holds about the waits in progress, not every wait of the last
    ``duration`` seconds, and a finished scope lets go of its task."""
    deadlines = Deadlines(60.0, asyncio.get_running_loop())

    async def wait() -> None:
        scope = deadlines.scope()
        assert scope is not None
        with scope:
            await asyncio.sleep(0)

    for _ in range(100):
        await asyncio.create_task(wait())
    assert len(deadlines) <= 1
    task = asyncio.create_task(wait())
    await task
    gc.collect()
    assert all(getattr(s, "_task", None) is None for s in deadlines._queue)


async def test_scope_needs_a_task_of_its_loop() -> None:
    """From a task of another event loop there is no scope (the caller falls back)."""
    other = asyncio.new_event_loop()
    try:
        deadlines = Deadlines(1.0, other)
        assert deadlines.scope() is None
    finally:
        other.close()


def test_duration_must_be_positive() -> None:
    """A zero or negative duration is refused."""
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="positive"):
            Deadlines(0, loop)
    finally:
        loop.close()


async def test_a_watch_calls_back_at_its_deadline_unless_done() -> None:
    """watch(): a deadline for a wait that is not a task, on the same one timer."""
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(0.02, loop)
    expired: list[str] = []
    late = deadlines.watch(lambda: expired.append("late"))
    early = deadlines.watch(lambda: expired.append("early"))
    early.done = True  # its wait ended in time
    await asyncio.sleep(0.05)
    assert expired == ["late"]
    assert late.done
    assert len(deadlines) == 0
