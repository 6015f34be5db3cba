"""The sync facade: blocking calls from many threads; hits stay in the calling thread."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shoal import Closed, GroupConfig, InvalidTTL, NodeConfig, NotFound
from shoal.group import Group
from shoal.sync import SyncGroup, SyncNode
from shoal.value import Value


def test_many_threads_one_load_per_key() -> None:
    """64 threads asking for 8 cold keys cause exactly 8 loads, all see the same values."""
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def load(key: str) -> bytes:
        with lock:
            calls[key] = calls.get(key, 0) + 1
        time.sleep(0.02)  # keep the loads in flight while the other threads arrive
        return key.upper().encode()

    with SyncNode() as node:
        g = node.group("g", load)
        barrier = threading.Barrier(64)

        def ask(n: int) -> bytes:
            barrier.wait()
            value: bytes = g.get(f"k{n % 8}")
            return value

        with ThreadPoolExecutor(64) as pool:
            results = list(pool.map(ask, range(64)))
        assert results == [f"K{n % 8}".encode() for n in range(64)]
        assert calls == {f"k{i}": 1 for i in range(8)}


def test_get_or_load_fills_once_from_many_threads() -> None:
    """The blocking twin of Group.get_or_load: 32 threads asking for one cold key run
    the filler once (its Value's TTL kept), a later hit needs no loop, and an async
    filler is refused with a pointer to the async form."""
    calls = 0
    lock = threading.Lock()

    def fill() -> Value[str]:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.02)
        return Value("filled", ttl=60)

    with SyncNode() as node:
        g = node.group("g", None, codec="str")
        barrier = threading.Barrier(32)

        def ask(_: int) -> str:
            barrier.wait()
            value: str = g.get_or_load("k", fill)
            return value

        with ThreadPoolExecutor(32) as pool:
            assert set(pool.map(ask, range(32))) == {"filled"}
        assert calls == 1
        assert g.get("k") == "filled"  # cached by the fill
        assert g.get_or_load("k", fill) == "filled"
        assert calls == 1
        short = g.get_or_load("brief", lambda: Value("soon gone", ttl=0.05))
        assert short == "soon gone"
        time.sleep(0.2)  # past the Value's TTL (the sweep or the read drops it)
        assert g.get_or_load("brief", lambda: "again") == "again"

        async def afill() -> str:
            return "x"

        with pytest.raises(TypeError, match=r"Group\.get_or_load"):
            g.get_or_load("other", afill)


def test_hit_does_not_hop_to_the_loop_thread() -> None:
    """A hit is answered while the event loop is blocked: proof it never goes there."""
    with SyncNode() as node:
        g = node.group("g", lambda k: b"v")
        assert g.get("k") == b"v"
        loop = node.node.loop
        assert loop is not None
        blocked, release = threading.Event(), threading.Event()

        def block() -> None:
            blocked.set()
            release.wait(5)

        loop.call_soon_threadsafe(block)
        blocked.wait(5)
        try:
            assert g.get("k") == b"v"  # would hang if it needed the loop
        finally:
            release.set()


def test_writes_and_errors_cross_threads() -> None:
    """set/delete/get_many work from threads; NotFound reaches the caller."""
    with SyncNode() as node:
        g = node.group("g", None, codec="str")
        g.set("a", "1")
        g.set("b", "2", ttl=60)
        assert g.get("a") == "1"
        assert g.get_many(["a", "b", "c"]) == {"a": "1", "b": "2"}
        assert g.delete("a") is True
        with pytest.raises(NotFound):
            g.get("a")
        g.invalidate("b")
        assert g.statistics().main.items == 0
        assert node.get_group("g").name == "g"


def test_a_ttl_past_2262_is_refused() -> None:
    """SyncGroup.set bounds TTLs as Group.set does: one ending after the latest expiry
    the peer protocols carry is InvalidTTL, and nothing is stored."""
    with SyncNode() as node:
        g = node.group("g", None, mode="replicated")
        for ttl in (1e10, 1e300):
            with pytest.raises(InvalidTTL, match="2262"):
                g.set("k", b"v", ttl=ttl)
        with pytest.raises(NotFound):
            g.get("k")
        g.set("k", b"v", ttl=1e9)
        assert g.get("k") == b"v"


def test_sync_decorator_keeps_an_async_function_async() -> None:
    """SyncGroup.cached on a coroutine function gives the group's async wrapper, which
    caches on the node's loop."""
    with SyncNode() as node:
        g = node.group("doubles", None)
        calls = 0

        @g.cached(key=lambda n: f"d:{n}")
        async def double(n: int) -> bytes:
            nonlocal calls
            calls += 1
            return str(2 * n).encode()

        assert inspect.iscoroutinefunction(double)
        loop = g.group.loop
        assert loop is not None
        for _ in range(2):
            assert asyncio.run_coroutine_threadsafe(double(21), loop).result() == b"42"
        assert calls == 1
        assert g.get("d:21") == b"42"


def test_sync_decorator_from_threads() -> None:
    """A decorated plain function runs once per key across threads."""
    calls = 0
    lock = threading.Lock()
    with SyncNode() as node:
        g = node.group("fib", None, codec="json")

        @g.cached()
        def slow_square(n: int) -> int:
            nonlocal calls
            with lock:
                calls += 1
            time.sleep(0.02)
            return n * n

        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(lambda _: slow_square(12), range(32))) == {144}
        assert calls == 1
        assert slow_square(3) == 9
        assert calls == 2


def test_blocking_call_on_the_loop_thread_is_refused() -> None:
    """Calling the facade from the loop thread raises instead of deadlocking."""

    async def main() -> None:
        g: Group[bytes] = Group(GroupConfig(name="g"), lambda k: b"v")
        g.loop = asyncio.get_running_loop()
        with pytest.raises(RuntimeError, match="event loop"):
            SyncGroup(g).get("k")

    asyncio.run(main())


def test_facade_without_a_running_loop_is_closed() -> None:
    """A group whose loop is not running gives Closed, not a hang."""
    g: Group[bytes] = Group(GroupConfig(name="g"), lambda k: b"v")
    with pytest.raises(Closed):
        SyncGroup(g).get("k")


def test_start_failure_is_raised_and_thread_stops() -> None:
    """A node that cannot start (port taken) raises from start()."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = SyncNode(NodeConfig(api_port=port))
        with pytest.raises(OSError, match=r"(?i)address already in use"):
            node.start()
    node.close()


def test_close_is_idempotent() -> None:
    """close() twice is fine."""
    node = SyncNode().start()
    node.close()
    node.close()


def test_many_threads_each_get_their_own_answer_through_the_hop() -> None:
    """Misses and writes from 8 threads at once: each waiter is woken by its own call,
    with its own result or error (the hop to the loop thread and back)."""

    async def load(key: str) -> bytes:
        await asyncio.sleep(0.001)  # the call suspends on the loop: a real task
        if key.startswith("absent"):
            raise NotFound(key)
        return key.encode()

    def work(i: int) -> None:
        assert group.get(f"k{i}") == f"k{i}".encode()
        group.set(f"w{i}", b"%d" % i)
        assert group.get(f"w{i}") == b"%d" % i
        with pytest.raises(NotFound):
            group.get(f"absent{i}")
        assert group.delete(f"w{i}") is True

    with SyncNode() as node:
        group = node.group("hop", load)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(work, range(200)))


def test_a_waiter_interrupted_cancels_its_call_on_the_loop() -> None:
    """KeyboardInterrupt while a thread waits: the call on the loop is cancelled."""
    from shoal._cached import _Hop

    started, cancelled = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with SyncNode() as node:
        loop = node.node.loop
        assert loop is not None
        hop: _Hop[None] = _Hop(loop, forever())
        loop.call_soon_threadsafe(hop.start)
        assert started.wait(5)

        real = hop._done

        class Interrupted:
            """The waiter's lock, as Ctrl-C finds it: acquire raises (once)."""

            def acquire(self) -> bool:
                hop._done = real
                raise KeyboardInterrupt

        hop._done = Interrupted()  # type: ignore[assignment]
        with pytest.raises(KeyboardInterrupt):
            hop.wait()
        assert cancelled.wait(5)
        assert real.acquire(timeout=5)  # the task finished and released the waiter
