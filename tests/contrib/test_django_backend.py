"""ShoalCache beyond Django's own suite: its async methods on the caller's loop, its
storage format at the node, its options, and LOCATION as several nodes.

The backend is built directly (``ShoalCache(LOCATION, params)``, as Django's cache
handler does), against two real ``shoal serve`` nodes.
"""

from __future__ import annotations

import asyncio
import inspect
import pickle
import threading
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
    if "near_cache" not in inspect.signature(SyncClient).parameters:
        with pytest.raises(ConfigError, match="near cache"):
            backend(cluster, OPTIONS={"near_cache": 1000})
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
    assert asyncio.get_running_loop() in cache._async_clients
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
