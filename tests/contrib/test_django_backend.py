"""ShoalCache beyond Django's own suite: its async methods on the caller's loop, its
storage format at the node, its options, and LOCATION as several nodes.

The backend is built directly (``ShoalCache(LOCATION, params)``, as Django's cache
handler does), against two real ``shoal serve`` nodes.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from helpers.processes import ShoalCluster, shoal_cluster
from shoal import ConfigError, SyncClient

pytest.importorskip("django")

from shoal.contrib.django import ShoalCache, dumps, loads


@pytest.fixture(scope="module")
def cluster() -> Iterator[ShoalCluster]:
    with shoal_cluster(2, "--group", "django", "--group", "other") as nodes:
        yield nodes


def backend(cluster: ShoalCluster, **params: Any) -> ShoalCache:
    return ShoalCache(",".join(node.url for node in cluster.nodes), params)


def test_ints_are_decimal_text_and_the_rest_pickles() -> None:
    assert dumps(41) == b"41"
    assert dumps(-(2**63)) == b"-9223372036854775808"
    assert dumps(2**63)[0] == 0x80  # beyond 64 bits: pickled, as is bool
    assert dumps(True)[0] == 0x80
    for value in (41, -7, 2**70, True, None, "41", b"41", 4.5, {"a": [1, 2]}):
        assert loads(dumps(value)) == value
        assert type(loads(dumps(value))) is type(value)


def test_the_node_holds_plain_bytes(cluster: ShoalCluster) -> None:
    cache = backend(cluster, KEY_PREFIX="fmt")
    cache.set("answer", 41)
    cache.set("greeting", "hello")
    with SyncClient(cluster.nodes[1].url) as client:
        assert client.get("django", "fmt:1:answer") == b"41"
        assert pickle.loads(client.get("django", "fmt:1:greeting")) == "hello"
    cache.delete_many(["answer", "greeting"])


def test_options_pick_the_group_and_refuse_unknown_ones(cluster: ShoalCluster) -> None:
    other = backend(cluster, OPTIONS={"group": "other"})
    default = backend(cluster)
    other.set("k", "in other")
    assert default.get("k") is None
    assert other.get("k") == "in other"
    other.clear()
    assert other.get("k") is None
    with pytest.raises(ConfigError, match="unknown OPTIONS"):
        backend(cluster, OPTIONS={"MAX_ENTRIES": 30})
    with pytest.raises(ConfigError, match="near_cache"):
        backend(cluster, OPTIONS={"near_cache": 1000})
    with pytest.raises(ConfigError, match="near_cache"):
        backend(cluster, OPTIONS={"near_cache": {"entries": 10}})
    with pytest.raises(ConfigError, match="LOCATION"):
        ShoalCache("", {})


def test_one_backend_serves_many_threads(cluster: ShoalCluster) -> None:
    cache = backend(cluster, KEY_PREFIX="threads")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                cache.set(f"t{n}-{i}", (n, i))
                assert cache.get(f"t{n}-{i}") == (n, i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache.get_many(f"t{n}-{i}" for n in range(4) for i in range(20))) == 80
    cache.clear()


async def test_async_methods_run_on_the_callers_loop(cluster: ShoalCluster) -> None:
    cache = backend(cluster, KEY_PREFIX="async")
    await cache.aset("a", {"x": 1})
    assert await cache.aget("a") == {"x": 1}
    assert await cache.aget("missing", "dflt") == "dflt"
    assert await cache.ahas_key("a") is True
    assert await cache.aset_many({"b": 2, "c": None}) == []
    assert await cache.aget_many(["a", "b", "c", "d"]) == {"a": {"x": 1}, "b": 2, "c": None}
    assert await cache.adelete("a") is True
    assert await cache.adelete("a") is False
    await cache.adelete_many(["b", "c"])
    assert await cache.aget_many(["b", "c"]) == {}
    await cache.aset("v", "one")
    assert await cache.aincr_version("v") == 2
    assert await cache.aget("v", version=2) == "one"
    assert await cache.aget("v") is None
    await cache.aset("gone", "x", timeout=0)
    assert await cache.ahas_key("gone") is False
    # The calls ran on this loop, with a client of this loop, not in a worker thread.
    assert asyncio.get_running_loop() in cache._shared._async
    await cache.aclear()
    assert await cache.aget("v", version=2) is None
    await cache.aclose()


def test_a_sync_call_sees_what_an_async_call_wrote(cluster: ShoalCluster) -> None:
    cache = backend(cluster, KEY_PREFIX="mixed")
    asyncio.run(cache.aset("k", [1, 2, 3]))
    assert cache.get("k") == [1, 2, 3]
    cache.set("k", "sync")
    assert asyncio.run(cache.aget("k")) == "sync"
    cache.delete("k")


def test_concurrent_incr_from_threads_loses_nothing(cluster: ShoalCluster) -> None:
    cache = backend(cluster, KEY_PREFIX="count")
    cache.set("hits", 0, timeout=60)

    def work() -> None:
        for _ in range(100):
            cache.incr("hits")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.get("hits") == 800
    with SyncClient(cluster.nodes[0].url) as client:
        assert client.get("django", "count:1:hits") == b"800"
    ttl = asyncio.run(shoal_ttl(cluster, "count:1:hits"))
    assert ttl is not None
    assert 50 < ttl <= 60  # incr kept the entry's TTL
    cache.delete("hits")


async def shoal_ttl(cluster: ShoalCluster, key: str) -> float | None:
    from shoal import Client

    async with Client(cluster.nodes[0].url) as client:
        return await client.ttl("django", key)


async def test_async_atomic_methods(cluster: ShoalCluster) -> None:
    cache = backend(cluster, KEY_PREFIX="aatomic")
    assert await cache.aadd("n", 41) is True
    assert await cache.aadd("n", 0) is False
    assert await cache.aincr("n") == 42
    assert await cache.adecr("n", 2) == 40
    with pytest.raises(ValueError, match="not found"):
        await cache.aincr("absent")
    await cache.aset("text", "forty")
    with pytest.raises(TypeError):
        await cache.aincr("text")
    assert await cache.atouch("n", 30) is True
    assert await cache.atouch("absent", 30) is False
    assert await cache.aget_or_set("n", 7) == 40
    assert await cache.aget_or_set("fresh", lambda: "made") == "made"
    assert await cache.atouch("n", 0) is True
    assert await cache.aget("n") is None
    await cache.aclear()


def test_near_cache_hits_stay_in_process_and_writes_reach_it(cluster: ShoalCluster) -> None:
    near = backend(cluster, KEY_PREFIX="near", OPTIONS={"near_cache": {"max_entries": 100}})
    other = backend(cluster, KEY_PREFIX="near")  # another process's view, no near cache
    near.set("k", "one")
    assert near.get("k") == "one"
    client = near._client()
    assert client.near_cache is not None
    assert len(client.near_cache) == 1  # the hit is kept in this process
    near.set("n", 1)
    assert near.get("n") == 1
    assert near.incr("n") == 2
    assert near.get("n") == 2
    other.set("k", "two")  # a write elsewhere reaches the near cache within its bound

    deadline = time.monotonic() + 2.0
    while near.get("k") != "two":
        assert time.monotonic() < deadline, "the near cache kept the old value for 2 s"
        time.sleep(0.01)
    near.clear()
    assert near.get("n") is None
