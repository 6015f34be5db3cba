"""Group: the read path, loaders, TTLs, negative caching, writes, fencing, decorator."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from shoal import (
    Closed,
    GroupConfig,
    InvalidKey,
    KeyTooLarge,
    LoadError,
    LoadTimeout,
    NotFound,
    Value,
    ValueTooLarge,
)
from shoal.group import Group
from shoal.testing import CountingLoader, ManualClock

DATA = {"Tom": b"630", "Jack": b"589", "Sam": b"567"}


def make(loader: Any = None, clock: ManualClock | None = None, **options: Any) -> Group[Any]:
    return Group(GroupConfig(name="scores", **options), loader, clock=clock or ManualClock())


class TestReadPath:
    async def test_miss_loads_once_then_hits(self) -> None:
        """The first get loads, the next ones hit; statistics say so."""
        loader = CountingLoader(DATA)
        g = make(loader)
        assert await g.get("Tom") == b"630"
        assert await g.get("Tom") == b"630"
        assert loader.calls["Tom"] == 1
        s = g.statistics()
        assert (s.gets, s.hits, s.loads, s.loads_run, s.local_loads) == (2, 1, 1, 1, 1)
        assert s.main.items == 1
        assert s.main.bytes == len("Tom630")

    async def test_stampede_is_one_load(self) -> None:
        """10,000 concurrent gets of a cold key cause one loader call."""
        gate = asyncio.Event()
        loader = CountingLoader(DATA, gate)
        g = make(loader)
        tasks = [asyncio.create_task(g.get("Tom")) for _ in range(10_000)]
        await loader.started.wait()
        gate.set()
        assert set(await asyncio.gather(*tasks)) == {b"630"}
        assert loader.total == 1
        s = g.statistics()
        assert s.loads == 10_000
        assert s.loads_run == 1
        assert s.loads_deduped == 1  # the deprecated alias
        assert s.as_dict()["loads_deduped"] == s.as_dict()["loads_run"] == 1

    async def test_sync_loader_runs_in_a_thread(self) -> None:
        """A plain function loader runs off the event loop thread."""
        loop_thread = threading.get_ident()
        threads: list[int] = []

        def load(key: str) -> bytes:
            threads.append(threading.get_ident())
            return key.encode()

        g = make(load)
        assert await g.get("abc") == b"abc"
        assert threads
        assert threads[0] != loop_thread

    async def test_async_callable_object_loader(self) -> None:
        """An object with an async __call__ counts as an async loader."""
        loader = CountingLoader(DATA)
        assert await make(loader).get("Sam") == b"567"

    async def test_not_found_is_not_cached_by_default(self) -> None:
        """Without negative_ttl every get of a missing key asks the loader."""
        loader = CountingLoader(DATA)
        g = make(loader)
        for _ in range(2):
            with pytest.raises(NotFound):
                await g.get("Nobody")
        assert loader.calls["Nobody"] == 2
        assert g.statistics().local_load_errors == 2

    async def test_negative_ttl_caches_not_found(self) -> None:
        """With negative_ttl a NotFound is remembered, then forgotten after the TTL."""
        clock = ManualClock()
        loader = CountingLoader(DATA)
        g = make(loader, clock, negative_ttl=5)
        for _ in range(3):
            with pytest.raises(NotFound):
                await g.get("Nobody")
        assert loader.calls["Nobody"] == 1
        with pytest.raises(NotFound):
            g.cached_bytes("Nobody")
        clock.advance(5)
        with pytest.raises(NotFound):
            await g.get("Nobody")
        assert loader.calls["Nobody"] == 2

    async def test_loader_errors_are_never_cached(self) -> None:
        """A failing load is retried by the next get and reaches the caller unchanged."""
        attempts = 0

        async def flaky(key: str) -> bytes:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise ConnectionError("db down")
            return b"ok"

        g = make(flaky)
        with pytest.raises(ConnectionError, match="db down"):
            await g.get("k")
        assert await g.get("k") == b"ok"
        assert g.statistics().local_load_errors == 1

    async def test_no_loader_means_not_found(self) -> None:
        """A group without a loader is a plain cache."""
        g = make(None)
        with pytest.raises(NotFound, match="no loader"):
            await g.get("k")
        await g.set("k", b"v")
        assert await g.get("k") == b"v"

    async def test_loader_returning_none_is_a_load_error(self) -> None:
        """None is not a value; the error says to raise NotFound."""

        async def none(key: str) -> None:
            return None

        with pytest.raises(LoadError, match="NotFound"):
            await make(none).get("k")

    async def test_unencodable_value_is_a_load_error(self) -> None:
        """A str from a loader of a bytes group is refused with a clear error."""

        async def wrong(key: str) -> str:
            return "text"

        with pytest.raises(LoadError, match="unusable"):
            await make(wrong).get("k")

    async def test_load_timeout_releases_every_waiter(self) -> None:
        """A hung loader times out; every waiter gets LoadTimeout, nothing is cached."""

        async def hang(key: str) -> bytes:
            await asyncio.Event().wait()
            return b""

        g = make(hang, load_timeout=0.05)
        results = await asyncio.gather(*(g.get("k") for _ in range(5)), return_exceptions=True)
        assert all(isinstance(r, LoadTimeout) for r in results)
        assert isinstance(results[0], TimeoutError)
        assert g.statistics().main.items == 0

    async def test_loader_own_timeout_error_passes_unchanged(self) -> None:
        """A TimeoutError raised by the loader itself is not reported as the group's timeout."""

        async def db_timeout(key: str) -> bytes:
            raise TimeoutError("query timed out")

        with pytest.raises(TimeoutError, match="query timed out") as info:
            await make(db_timeout).get("k")
        assert not isinstance(info.value, LoadTimeout)

    @pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
    async def test_base_exception_from_async_loader_releases_waiters(
        self, exc_type: type[BaseException]
    ) -> None:
        """KeyboardInterrupt/SystemExit in a loader become LoadError; the loop survives."""

        async def crash(key: str) -> bytes:
            await asyncio.sleep(0)
            raise exc_type

        g = make(crash)
        results = await asyncio.gather(*(g.get("k") for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, LoadError) for r in results)
        assert isinstance(results[0].__cause__, exc_type)

    async def test_base_exception_from_sync_loader_releases_waiters(self) -> None:
        """The same for a sync loader running in a thread."""

        def crash(key: str) -> bytes:
            raise KeyboardInterrupt

        with pytest.raises(LoadError):
            await make(crash).get("k")

    async def test_loader_value_with_ttl(self) -> None:
        """A loader's Value(ttl=...) overrides the group TTL."""
        clock = ManualClock()

        async def load(key: str) -> Value[bytes]:
            return Value(b"v", ttl=2 if key == "short" else None)

        g = make(load, clock, ttl=10)
        await g.get("short")
        await g.get("long")
        clock.advance(2)
        assert g.cached_bytes("short") is None
        assert g.cached_bytes("long") == b"v"
        clock.advance(8)
        assert g.cached_bytes("long") is None

    async def test_get_many(self) -> None:
        """get_many returns the found keys, leaves missing ones out, loads each once."""
        loader = CountingLoader(DATA)
        g = make(loader)
        await g.get("Tom")
        got = await g.get_many(["Tom", "Jack", "Nobody", "Jack"])
        assert got == {"Tom": b"630", "Jack": b"589"}
        assert loader.calls == {"Tom": 1, "Jack": 1, "Nobody": 1}

    async def test_get_many_raises_loader_errors(self) -> None:
        """A real failure in get_many is raised, not hidden."""

        async def load(key: str) -> bytes:
            if key == "bad":
                raise RuntimeError("broken")
            return b"v"

        with pytest.raises(RuntimeError, match="broken"):
            await make(load).get_many(["ok", "bad"])


class TestCodecs:
    @pytest.mark.parametrize(
        ("codec", "value"),
        [("str", "héllo"), ("json", {"a": [1, 2, None]}), ("msgpack", {"a": [1, b"\x00"]})],
    )
    async def test_roundtrip(self, codec: str, value: Any) -> None:
        """Typed values are stored as bytes and decoded on every get."""

        async def load(key: str) -> Any:
            return value

        g = make(load, codec=codec)
        assert await g.get("k") == value
        assert await g.get("k") == value
        assert isinstance(g.cached_bytes("k"), bytes)


class TestWrites:
    async def test_set_get_delete(self) -> None:
        """set stores, delete removes and reports whether anything was cached."""
        g = make(CountingLoader(DATA))
        await g.set("k", b"v")
        assert await g.get("k") == b"v"
        assert await g.delete("k")
        assert not await g.delete("k")

    async def test_set_ttl(self) -> None:
        """A write's TTL wins over the group default."""
        clock = ManualClock()
        g = make(None, clock, ttl=100)
        await g.set("a", b"1", ttl=1)
        await g.set("b", b"2")
        clock.advance(1)
        assert g.cached_bytes("a") is None
        assert g.cached_bytes("b") == b"2"

    async def test_invalid_input(self) -> None:
        """Bad keys, values and TTLs are refused and change nothing."""
        g = make(None, max_key_bytes=8, max_value_bytes=4)
        with pytest.raises(InvalidKey):
            await g.set("", b"v")
        with pytest.raises(InvalidKey):
            await g.get(b"k")  # type: ignore[arg-type]
        with pytest.raises(KeyTooLarge):
            await g.set("123456789", b"v")
        with pytest.raises(KeyTooLarge):
            await g.get("ééééé")  # 5 characters, 10 bytes
        with pytest.raises(ValueTooLarge):
            await g.set("k", b"12345")
        with pytest.raises(ValueError, match="ttl"):
            await g.set("k", b"1", ttl=-1)
        assert g.statistics().main.items == 0

    async def test_delete_during_load_wins(self) -> None:
        """A delete while a load is in flight: the load's result is returned, not cached."""
        gate = asyncio.Event()
        loader = CountingLoader(DATA, gate)
        g = make(loader)
        waiter = asyncio.create_task(g.get("Tom"))
        await loader.started.wait()
        await g.delete("Tom")
        gate.set()
        assert await waiter == b"630"
        assert g.cached_bytes("Tom") is None

    async def test_set_during_load_wins(self) -> None:
        """A set while a load is in flight is not overwritten by the load."""
        gate = asyncio.Event()
        loader = CountingLoader(DATA, gate)
        g = make(loader)
        waiter = asyncio.create_task(g.get("Tom"))
        await loader.started.wait()
        await g.set("Tom", b"999")
        gate.set()
        await waiter
        assert await g.get("Tom") == b"999"

    async def test_get_after_fence_starts_a_new_load(self) -> None:
        """After a delete, a new get does not join the stale load."""
        gate = asyncio.Event()
        loader = CountingLoader(DATA, gate)
        g = make(loader)
        first = asyncio.create_task(g.get("Tom"))
        await loader.started.wait()
        await g.invalidate("Tom")
        second = asyncio.create_task(g.get("Tom"))
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(first, second)
        assert loader.calls["Tom"] == 2
        assert g.cached_bytes("Tom") == b"630"

    async def test_aclose_releases_waiters(self) -> None:
        """Closing a group with a load in flight gives its waiters Closed."""
        loader = CountingLoader(DATA, asyncio.Event())
        g = make(loader)
        waiter = asyncio.create_task(g.get("Tom"))
        await loader.started.wait()
        await g.aclose()
        with pytest.raises(Closed):
            await waiter


class TestDecorator:
    async def test_async_function(self) -> None:
        """Results are cached by arguments; concurrent calls run the function once."""
        g = make(None, codec="json")
        calls: list[tuple[int, str]] = []

        @g.cached()
        async def profile(user_id: int, lang: str = "en") -> dict[str, Any]:
            calls.append((user_id, lang))
            await asyncio.sleep(0)
            return {"id": user_id, "lang": lang}

        results = await asyncio.gather(*(profile(1) for _ in range(50)))
        assert results[0] == {"id": 1, "lang": "en"}
        assert len(calls) == 1
        assert await profile(1, lang="fr") == {"id": 1, "lang": "fr"}
        assert await profile(2) == {"id": 2, "lang": "en"}
        assert len(calls) == 3
        assert profile.__name__ == "profile"

    async def test_custom_key_and_ttl(self) -> None:
        """key= names the entry; ttl= bounds its life."""
        clock = ManualClock()
        g = make(None, clock)

        @g.cached(key=lambda n: f"sq:{n}", ttl=3)
        async def square(n: int) -> bytes:
            return str(n * n).encode()

        assert await square(4) == b"16"
        assert g.cached_bytes("sq:4") == b"16"
        clock.advance(3)
        assert g.cached_bytes("sq:4") is None

    async def test_long_arguments_are_hashed_into_the_key(self) -> None:
        """Arguments too long for a key are hashed rather than rejected."""
        g = make(None, max_key_bytes=64)

        @g.cached()
        async def echo(text: str) -> bytes:
            return text.encode()

        assert await echo("x" * 500) == b"x" * 500
        assert await echo("x" * 500) == b"x" * 500
        assert g.statistics().main.items == 1


async def test_sync_loader_pool_is_bounded() -> None:
    """A group's sync loaders run in the executor it was given, at most its size at once."""
    from concurrent.futures import ThreadPoolExecutor

    running = 0
    peak = 0
    lock = threading.Lock()

    def load(key: str) -> bytes:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.01)
        with lock:
            running -= 1
        return b"v"

    with ThreadPoolExecutor(max_workers=3) as pool:
        g: Group[bytes] = Group(GroupConfig(name="g"), load, executor=pool)
        await asyncio.gather(*(g.get(f"k{i}") for i in range(20)))
    assert peak <= 3
