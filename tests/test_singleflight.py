"""Singleflight: dedup, error fan-out, cancellation of leader and waiters, crashes, fencing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from shoal.errors import Closed
from shoal.singleflight import Call, Flight


class Boom(Exception):
    pass


async def test_concurrent_callers_share_one_call() -> None:
    """1,000 concurrent callers of one key run the function once and get the same value."""
    flight: Flight[bytes] = Flight()
    release = asyncio.Event()
    calls = 0

    async def fn(call: Call[bytes]) -> bytes:
        nonlocal calls
        calls += 1
        await release.wait()
        return b"v"

    tasks = [asyncio.create_task(flight.do("k", fn)) for _ in range(1000)]
    await asyncio.sleep(0)
    release.set()
    assert set(await asyncio.gather(*tasks)) == {b"v"}
    assert calls == 1
    assert flight.started == 1
    assert len(flight) == 0


async def test_different_keys_run_separately() -> None:
    """Each key has its own flight."""
    flight: Flight[str] = Flight()

    async def fn(call: Call[str]) -> str:
        await asyncio.sleep(0)
        return call.key

    assert list(await asyncio.gather(flight.do("a", fn), flight.do("b", fn))) == ["a", "b"]
    assert flight.started == 2


async def test_every_waiter_gets_the_same_exception() -> None:
    """An error reaches every waiter as the same object."""
    flight: Flight[bytes] = Flight()
    release = asyncio.Event()

    async def fn(call: Call[bytes]) -> bytes:
        await release.wait()
        raise Boom("db down")

    tasks = [asyncio.create_task(flight.do("k", fn)) for _ in range(10)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, Boom) for r in results)
    assert len({id(r) for r in results}) == 1


async def test_cancelling_the_first_caller_cancels_no_one_else() -> None:
    """The leader's cancellation does not cancel the load or the other waiters."""
    flight: Flight[bytes] = Flight()
    started, release = asyncio.Event(), asyncio.Event()

    async def fn(call: Call[bytes]) -> bytes:
        started.set()
        await release.wait()
        return b"v"

    leader = asyncio.create_task(flight.do("k", fn))
    await started.wait()
    follower = asyncio.create_task(flight.do("k", fn))
    await asyncio.sleep(0)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    release.set()
    assert await follower == b"v"
    assert flight.started == 1


async def test_all_callers_cancelled_the_load_still_finishes() -> None:
    """With every caller gone, the load completes and its error is not left unretrieved."""
    flight: Flight[bytes] = Flight()
    started, release, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def fn(call: Call[bytes]) -> bytes:
        started.set()
        await release.wait()
        finished.set()
        raise Boom

    waiter = asyncio.create_task(flight.do("k", fn))
    await started.wait()
    waiter.cancel()
    release.set()
    await finished.wait()
    await asyncio.sleep(0)
    assert len(flight) == 0


async def test_base_exception_releases_waiters() -> None:
    """A BaseException that is not an Exception still reaches every waiter."""

    class Fatal(BaseException):
        pass

    flight: Flight[bytes] = Flight()

    async def fn(call: Call[bytes]) -> bytes:
        await asyncio.sleep(0)
        raise Fatal

    results = await asyncio.gather(*(flight.do("k", fn) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, Fatal) for r in results)


async def test_fence_detaches_the_running_call() -> None:
    """After fence(), the running call is marked, and a new caller starts a fresh call."""
    flight: Flight[str] = Flight()
    release = asyncio.Event()
    seen: list[Call[str]] = []

    async def fn(call: Call[str]) -> str:
        seen.append(call)
        await release.wait()
        return "fenced" if call.fenced else "fresh"

    first = asyncio.create_task(flight.do("k", fn))
    await asyncio.sleep(0)
    assert flight.fence("k")
    assert not flight.fence("k")
    second = asyncio.create_task(flight.do("k", fn))
    await asyncio.sleep(0)
    release.set()
    assert (await first, await second) == ("fenced", "fresh")
    assert [c.fenced for c in seen] == [True, False]
    assert flight.started == 2


async def test_aclose_cancels_loads_and_releases_waiters_with_closed() -> None:
    """Closing cancels the load; waiters get Closed, new callers too."""
    flight: Flight[bytes] = Flight()
    started = asyncio.Event()

    async def fn(call: Call[bytes]) -> bytes:
        started.set()
        await asyncio.Event().wait()
        return b""

    waiter = asyncio.create_task(flight.do("k", fn))
    await started.wait()
    await flight.aclose()
    with pytest.raises(Closed):
        await waiter
    with pytest.raises(Closed):
        await flight.do("k", fn)


# -- direct calls: a load started without a task, settled from a callback ----------


async def _never(call: Call[bytes]) -> bytes:
    raise AssertionError("a direct call must not run the task function")


def _taking(calls: list[Call[bytes]]) -> Callable[[Call[bytes]], bool]:
    """A ``direct`` that takes every load on and keeps its call in ``calls``."""

    def direct(call: Call[bytes]) -> bool:
        calls.append(call)
        return True

    return direct


async def test_a_direct_call_is_settled_by_its_callback_and_shared() -> None:
    """``direct`` takes the load on: no task runs, every caller joining meanwhile shares
    it, and :meth:`Flight.settle` gives them all the value."""
    flight: Flight[bytes] = Flight()
    started: list[Call[bytes]] = []

    direct = _taking(started)
    first = flight.join("k", _never, direct)
    second = flight.join("k", _never, direct)
    assert len(started) == 1
    assert flight.running("k")
    assert flight.started == 1
    assert started[0].task is None
    flight.settle(started[0], b"v")
    assert await first == b"v"
    assert await second == b"v"
    assert not flight.running("k")
    flight.settle(started[0], b"late")  # a second settle does nothing
    third = flight.join("k", _never, direct)
    assert len(started) == 2
    assert not third.done()
    flight.settle(started[1], error=Boom())
    with pytest.raises(Boom):
        await third


async def test_a_direct_call_declined_runs_the_task() -> None:
    """``direct`` returning False leaves the load to ``fn`` in a task, as without it."""
    flight: Flight[bytes] = Flight()

    async def fn(call: Call[bytes]) -> bytes:
        return b"from the task"

    assert await flight.do("k", fn, lambda call: False) == b"from the task"


async def test_a_direct_call_can_finish_in_a_task() -> None:
    """:meth:`Flight.run` hands a direct call to a task (a fallback that must await)."""
    flight: Flight[bytes] = Flight()
    calls: list[Call[bytes]] = []

    direct = _taking(calls)

    async def fallback() -> bytes:
        await asyncio.sleep(0)
        return b"loaded here"

    waiter = flight.join("k", _never, direct)
    flight.run(calls[0], fallback())
    assert calls[0].task is not None
    assert await waiter == b"loaded here"
    assert not flight.running("k")


async def test_a_fenced_direct_call_still_answers_its_waiters() -> None:
    """Fencing detaches a direct call like a task's: later callers start anew, the
    fenced call's waiters still get its outcome, which it can see is stale."""
    flight: Flight[bytes] = Flight()
    calls: list[Call[bytes]] = []

    direct = _taking(calls)
    old = flight.join("k", _never, direct)
    assert flight.fence("k")
    assert calls[0].fenced
    new = flight.join("k", _never, direct)
    assert len(calls) == 2
    flight.settle(calls[0], b"stale")
    flight.settle(calls[1], b"fresh")
    assert (await old, await new) == (b"stale", b"fresh")


async def test_aclose_stops_direct_calls() -> None:
    """Closing the flight calls each direct call's ``cancel`` and gives its waiters
    Closed; a fallback handed to a closed flight is dropped, its waiters get Closed."""
    flight: Flight[bytes] = Flight()
    calls: list[Call[bytes]] = []
    cancelled: list[str] = []

    def direct(call: Call[bytes]) -> bool:
        call.cancel = lambda: cancelled.append(call.key)
        calls.append(call)
        return True

    a = flight.join("a", _never, direct)
    b = flight.join("b", _never, direct)
    await flight.aclose()
    assert sorted(cancelled) == ["a", "b"]
    for waiter in (a, b):
        with pytest.raises(Closed):
            await waiter

    coroutine_ran = False

    async def fallback() -> bytes:
        nonlocal coroutine_ran
        coroutine_ran = True
        return b"x"

    flight.run(calls[0], fallback())  # after close: dropped, not run
    await asyncio.sleep(0)
    assert not coroutine_ran
    with pytest.raises(Closed):
        flight.join("c", _never, direct)


async def test_join_from_a_callback_keeps_the_flights_loop() -> None:
    """A join from a plain callback (no task) on the flight's loop works and shares the
    load with joins from tasks."""
    flight: Flight[bytes] = Flight()
    release = asyncio.Event()

    async def fn(call: Call[bytes]) -> bytes:
        await release.wait()
        return b"v"

    from_task = asyncio.ensure_future(flight.do("k", fn))
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    joined: list[asyncio.Future[bytes]] = []
    loop.call_soon(lambda: joined.append(flight.join("k", fn)))
    await asyncio.sleep(0)
    assert flight.started == 1
    assert len(joined) == 1
    release.set()
    assert await from_task == b"v"
    assert await joined[0] == b"v"
