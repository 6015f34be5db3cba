"""stale-while-revalidate: an expired value is served for a grace period while one
background load replaces it; never past the grace period, never after a delete."""

from __future__ import annotations

import asyncio

from shoal import Group, GroupConfig, NotFound
from shoal.testing import ManualClock


class Source:
    """A loader whose value and availability the test controls."""

    def __init__(self) -> None:
        self.value = b"v1"
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.missing = False

    async def __call__(self, key: str) -> bytes:
        self.calls += 1
        await self.gate.wait()
        if self.missing:
            raise NotFound(key)
        return self.value


def make(grace: float | None = 30.0) -> tuple[Group[bytes], Source, ManualClock]:
    clock = ManualClock(1_000.0)
    source = Source()
    config = GroupConfig(name="g", ttl=10, stale_while_revalidate=grace)
    return Group(config, source, clock=clock), source, clock


async def test_an_expired_value_is_served_while_one_reload_runs() -> None:
    group, source, clock = make()
    assert await group.get("k") == b"v1"
    source.value, source.gate = b"v2", asyncio.Event()
    clock.advance(11)
    # Every caller during the reload gets the old value at once; one reload runs.
    assert await asyncio.gather(*(group.get("k") for _ in range(50))) == [b"v1"] * 50
    assert group.cached_bytes("k") == b"v1"
    assert source.calls == 2
    source.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert await group.get("k") == b"v2"
    assert source.calls == 2


async def test_nothing_is_served_past_the_grace_period() -> None:
    group, source, clock = make(grace=5)
    await group.get("k")
    source.value = b"v2"
    clock.advance(10 + 5 + 0.01)
    assert group.cached_bytes("k") is None
    assert await group.get("k") == b"v2"


async def test_without_the_option_an_expired_value_is_never_served() -> None:
    group, source, clock = make(grace=None)
    await group.get("k")
    source.value, source.gate = b"v2", asyncio.Event()
    clock.advance(11)
    reader = asyncio.create_task(group.get("k"))
    await asyncio.sleep(0.01)
    assert not reader.done()  # waits for the load
    source.gate.set()
    assert await reader == b"v2"


async def test_a_delete_stops_the_stale_value() -> None:
    group, source, clock = make()
    await group.get("k")
    source.value, source.gate = b"v2", asyncio.Event()
    clock.advance(11)
    assert group.cached_bytes("k") == b"v1"  # stale, its reload held at the gate
    await group.delete("k")  # fences the reload and drops the stale value
    assert group.cached_bytes("k") is None
    source.gate.set()
    assert await group.get("k") == b"v2"


async def test_a_key_gone_at_the_source_stops_being_served() -> None:
    group, source, clock = make()
    await group.get("k")
    source.missing = True
    clock.advance(11)
    assert await group.get("k") == b"v1"  # stale, and the reload learns it is gone
    for _ in range(5):
        await asyncio.sleep(0)
    try:
        await group.get("k")
    except NotFound:
        pass
    else:
        raise AssertionError("a deleted source key was still served")


async def test_a_failing_reload_keeps_serving_within_the_grace_period() -> None:
    group, _, clock = make()
    await group.get("k")

    async def broken(key: str) -> bytes:
        raise ConnectionError("database down")

    group._loader = broken
    clock.advance(11)
    assert await group.get("k") == b"v1"
    for _ in range(5):
        await asyncio.sleep(0)
    assert await group.get("k") == b"v1"
