"""``shoal.Client`` against real ``shoal serve`` processes that talk the groupcache HTTP
peer protocol: it learns the ring from a node's HTTP API, asks each key's owner on its
peer port, and keeps working while a node is SIGKILLed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import shoal
from helpers.processes import (
    CountedCluster,
    LoadLog,
    ShoalServer,
    group_stats,
    http_get,
    loaded_value,
    shoal_cluster,
    sigkill_under_load,
)

GROUP = "data"


def stats(node: ShoalServer) -> dict[str, Any]:
    """The statistics of group ``data`` on ``node``."""
    return group_stats(node, GROUP)


async def test_the_client_sends_each_key_to_its_owner(counted: CountedCluster) -> None:
    """The client learns members and ring from /v1/cluster and fetches every key from
    its owner's peer port: the owner loads it, no node fetches from a peer."""
    c, loads = counted.cluster, counted.loads
    async with shoal.Client(c.nodes[1].url) as client:
        assert client.members == tuple(c.urls)
        assert client.transport == "http"
        peer_loads = [stats(node)["peer_loads"] for node in c.nodes]
        for index in range(3):
            served = stats(c.nodes[index])["server_requests"]
            keys = c.keys_owned_by(index, f"client{index}", count=3)
            values = await asyncio.gather(*(client.get(GROUP, key) for key in keys))
            assert values == [loaded_value(key) for key in keys]
            for key in keys:
                assert loads.nodes(key) == [c.urls[index]]
            assert stats(c.nodes[index])["server_requests"] == served + len(keys)
        assert [stats(node)["peer_loads"] for node in c.nodes] == peer_loads
        with pytest.raises(shoal.NotFound):
            await client.get(GROUP, "missing-client")


async def test_the_client_batches_and_writes(counted: CountedCluster) -> None:
    """get_many gets every existing key; set reaches the owner and drops the hot copies
    of the other nodes; delete drops the key everywhere."""
    c = counted.cluster
    async with shoal.Client([c.nodes[0].url, c.nodes[2].url]) as client:
        keys = [f"many-{i}" for i in range(30)]
        assert await client.get_many(GROUP, [*keys, "missing-many"]) == {
            k: loaded_value(k) for k in keys
        }
        (key,) = c.keys_owned_by(2, "written")
        asker = c.nodes[0]
        assert http_get(f"{asker.url}/api?key={key}") == (200, loaded_value(key))  # hot copy
        await client.set(GROUP, key, b"fresh", ttl=60)
        for node in c.nodes:
            assert http_get(f"{node.url}/api?key={key}") == (200, b"fresh"), node.url
        await client.delete(GROUP, key)
        assert await client.get(GROUP, key) == loaded_value(key)


async def test_the_client_survives_a_sigkill(tmp_path: Path) -> None:
    """Smart clients keep reading while a node is SIGKILLed: no request fails; the dead
    node's keys are answered by the survivors, which load them."""
    loads = LoadLog(tmp_path / "calls")
    with shoal_cluster(
        3, "--group", "data=helpers.loadlog:load", "--hot-admission", "never", env=loads.env(0.005)
    ) as c:
        survivors = c.nodes[:2]

        def victim_keys_after() -> list[str]:
            return [k for k in done_after if c.owner(k) == 2]

        async with shoal.Client([node.url for node in c.nodes]) as client:

            async def read(n: int) -> tuple[str, str | None]:
                key = f"steady-{n}"
                try:
                    value = await client.get(GROUP, key)
                except shoal.ShoalError as exc:
                    return key, f"{key}: {exc!r}"
                if value != loaded_value(key):
                    return key, f"{key}: wrong value {value!r}"
                return key, None

            run = await sigkill_under_load(c, 2, [read] * 8, before=150, after=200, victim_after=40)
        failures, done_after = run.failures, run.after
        assert failures == []
        for key in victim_keys_after():
            assert set(loads.nodes(key)) <= {s.peer_url for s in survivors}, key
