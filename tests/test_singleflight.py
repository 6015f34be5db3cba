"""Singleflight: dedup, error fan-out, cancellation of leader and waiters, crashes, fencing."""

from __future__ import annotations

import asyncio

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

    assert await asyncio.gather(flight.do("a", fn), flight.do("b", fn)) == ["a", "b"]
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
