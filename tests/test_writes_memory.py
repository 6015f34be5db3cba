"""The write path over the in-process transport: partitioned writes reach the owner
and drop every other copy, fencing holds across nodes, TTLs travel, and replicated
groups converge (pushes, anti-entropy, last writer wins, tombstones, clears)."""

from __future__ import annotations

import asyncio

import pytest

from helpers.memory_cluster import DATA, Cluster, cluster
from shoal import Group, GroupFull, Node, NodeConfig, NotFound, PeerUnavailable
from shoal.testing import CountingLoader, ManualClock
from shoal.transport.memory import MemoryNetwork


async def test_set_on_a_non_owner_is_visible_everywhere_and_drops_hot_copies() -> None:
    async with cluster(hot_admission="always") as c:
        key = c.key_owned_by(1)
        for group in c.groups:  # every node has the old value (owner main, others hot)
            assert await group.get(key) == DATA[key]
        assert c.values(key) == [DATA[key]] * 3
        await c.groups[0].set(key, b"new")
        assert c.values(key) == [None, b"new", None]  # hot copies gone, the owner has it
        assert [await g.get(key) for g in c.groups] == [b"new"] * 3
        assert sum(loader.total for loader in c.loaders) == 1  # the set was never reloaded


async def test_set_on_the_owner_drops_the_others_copies() -> None:
    async with cluster(hot_admission="always") as c:
        key = c.key_owned_by(2)
        for group in c.groups:
            await group.get(key)
        await c.groups[2].set(key, b"mine")
        assert c.values(key) == [None, None, b"mine"]


async def test_delete_removes_every_copy_and_says_whether_the_owner_had_it() -> None:
    async with cluster(hot_admission="always") as c:
        key = c.key_owned_by(1)
        for group in c.groups:
            await group.get(key)
        assert await c.groups[2].delete(key) is True
        assert c.values(key) == [None, None, None]
        assert await c.groups[2].delete(key) is False


async def test_remove_keys_groups_keys_by_owner() -> None:
    async with cluster(hot_admission="always") as c:
        keys = [c.key_owned_by(i) for i in range(3)]
        for group in c.groups:
            await group.get_many(keys)
        assert await c.groups[0].remove_keys(keys) == 3
        assert all(c.values(k) == [None] * 3 for k in keys)


async def test_delete_during_a_slow_load_at_the_owner_is_not_undone() -> None:
    gate = asyncio.Event()
    async with cluster(gate=gate, hot_admission="always") as c:
        key = c.key_owned_by(1)
        readers = [asyncio.create_task(g.get(key)) for g in c.groups]
        await c.loaders[1].started.wait()
        await c.groups[2].delete(key)  # while the owner's load is in flight
        gate.set()
        assert await asyncio.gather(*readers) == [DATA[key]] * 3  # waiters get the load
        assert c.values(key) == [None, None, None]  # but nobody cached it
        assert c.loaders[1].total == 1


async def test_set_during_a_slow_load_wins_over_the_load() -> None:
    gate = asyncio.Event()
    async with cluster(gate=gate, hot_admission="always") as c:
        key = c.key_owned_by(0)
        reader = asyncio.create_task(c.groups[1].get(key))
        await c.loaders[0].started.wait()
        await c.groups[2].set(key, b"written")
        gate.set()
        await reader
        assert [await g.get(key) for g in c.groups] == [b"written"] * 3


async def test_invalidate_group_empties_every_node_and_fences_loads() -> None:
    async with cluster(hot_admission="always") as c:
        keys = list(DATA)[:30]
        for group in c.groups:
            await group.get_many(keys)
        assert await c.groups[1].invalidate_group() > 0
        assert all(g.statistics().main.items == 0 for g in c.groups)
        assert all(g.statistics().hot.items == 0 for g in c.groups)
        assert await c.groups[0].get(keys[0]) == DATA[keys[0]]  # loads again


async def test_ttl_of_a_write_travels_to_the_owner_and_expires_everywhere() -> None:
    async with cluster(hot_admission="always", ttl=600) as c:
        key = c.key_owned_by(2)
        await c.groups[0].set(key, b"short", ttl=5)
        assert [await g.get(key) for g in c.groups] == [b"short"] * 3
        c.clock.advance(5.01)
        # Expired everywhere: the next read loads the source's value afresh.
        assert [await g.get(key) for g in c.groups] == [DATA[key]] * 3
        await c.groups[1].set(key, b"default")  # the group's TTL: 600 s
        c.clock.advance(599)
        assert await c.groups[0].get(key) == b"default"
        c.clock.advance(2)
        assert await c.groups[0].get(key) == DATA[key]


async def test_a_set_whose_owner_is_down_fails_and_stores_nothing() -> None:
    async with cluster() as c:
        key = c.key_owned_by(1)
        c.network.down.add(c.urls[1])
        with pytest.raises(PeerUnavailable):
            await c.groups[0].set(key, b"lost")
        assert c.values(key) == [None, None, None]
        with pytest.raises(PeerUnavailable):  # skipped now, at once
            await c.groups[0].set(key, b"lost")


async def test_a_member_that_is_down_does_not_fail_a_write() -> None:
    async with cluster() as c:
        key = c.key_owned_by(1)
        c.network.down.add(c.urls[2])
        await c.groups[0].set(key, b"ok")
        assert await c.groups[1].get(key) == b"ok"
        assert c.groups[0].statistics().peer_errors == 1


# -- replicated groups ---------------------------------------------------------------------


async def settle(c: Cluster) -> None:
    """Let background pushes finish."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_replicated_write_reaches_every_node() -> None:
    async with cluster(mode="replicated", anti_entropy_interval=3600) as c:
        await c.groups[0].set("a", b"1")
        assert c.values("a") == [b"1"] * 3  # visible everywhere when set returns
        assert await c.groups[2].delete("a") is True
        assert c.values("a") == [None] * 3
        assert all(len(g.replica.state) == 1 for g in c.groups if g.replica)  # tombstones


async def test_replicated_read_loads_once_and_replicates_the_value() -> None:
    async with cluster(mode="replicated", anti_entropy_interval=3600) as c:
        key = "k7"
        values = await asyncio.gather(*(g.get(key) for g in c.groups for _ in range(5)))
        assert values == [DATA[key]] * 15
        assert sum(loader.total for loader in c.loaders) == 1
        await settle(c)
        assert c.values(key) == [DATA[key]] * 3


async def test_a_write_during_a_replicated_load_wins() -> None:
    gate = asyncio.Event()
    async with cluster(gate=gate, mode="replicated", anti_entropy_interval=3600) as c:
        owner = c.owner_index("k3")
        reader = asyncio.create_task(c.groups[owner].get("k3"))
        await c.loaders[owner].started.wait()
        c.clock.advance(0.01)
        await c.groups[(owner + 1) % 3].set("k3", b"set")
        gate.set()
        assert await reader == DATA["k3"]
        await settle(c)
        assert c.values("k3") == [b"set"] * 3


async def test_replicated_group_converges_after_a_partition() -> None:
    async with cluster(mode="replicated", anti_entropy_interval=3600) as c:
        a, b, cut = c.groups
        for i in range(50):
            await a.set(f"x{i}", b"before")
        c.network.down.add(c.urls[2])
        c.clock.advance(1)
        for i in range(0, 50, 2):
            await cut.set(f"x{i}", b"cut-side")  # earlier
        c.clock.advance(1)
        for i in range(0, 50, 4):
            await a.set(f"x{i}", b"main-side")  # later: wins
        for i in range(1, 50, 2):
            await cut.delete(f"x{i}")  # deletes on the cut-off side
        await b.set("only-main", b"m")
        c.network.down.clear()
        for peer in c.nodes[0].peers.view.clients.values():  # type: ignore[union-attr]
            c.nodes[0].peers.succeeded(peer.url)  # type: ignore[union-attr]
        for group, node in zip(c.groups, c.nodes, strict=True):
            node.peers.succeeded(c.urls[2])  # type: ignore[union-attr]
            assert group.replica is not None
        assert cut.replica is not None
        assert a.replica is not None
        await cut.replica.sync_with(c.nodes[2].peers.view.clients[c.urls[0]])  # type: ignore[union-attr]
        await a.replica.sync_with(c.nodes[0].peers.view.clients[c.urls[1]])  # type: ignore[union-attr]
        expected = {}
        for i in range(50):
            expected[f"x{i}"] = b"main-side" if i % 4 == 0 else b"cut-side" if i % 2 == 0 else None
        expected["only-main"] = b"m"
        for key, value in expected.items():
            assert c.values(key) == [value] * 3, key
        roots = {g.replica.state.root() for g in c.groups if g.replica}
        assert len(roots) == 1
        # Nothing differs now: a round is one digest exchange.
        assert await a.replica.sync_with(c.nodes[0].peers.view.clients[c.urls[2]]) == 0  # type: ignore[union-attr]


async def test_replicated_invalidate_reaches_a_node_that_missed_it() -> None:
    async with cluster(mode="replicated", anti_entropy_interval=3600) as c:
        a, _, cut = c.groups
        await a.set("old", b"1")
        c.network.down.add(c.urls[2])
        c.clock.advance(1)
        assert await a.invalidate_group() == 1
        c.clock.advance(1)
        await a.set("new", b"2")
        c.network.down.clear()
        c.nodes[0].peers.succeeded(c.urls[2])  # type: ignore[union-attr]
        assert cut.replica is not None
        await cut.replica.sync_with(c.nodes[2].peers.view.clients[c.urls[0]])  # type: ignore[union-attr]
        assert c.values("old") == [None] * 3
        assert c.values("new") == [b"2"] * 3


async def test_replicated_group_refuses_writes_over_capacity() -> None:
    async with cluster(mode="replicated", capacity_entries=3, anti_entropy_interval=3600) as c:
        for i in range(3):
            await c.groups[0].set(f"f{i}", b"v")
        with pytest.raises(GroupFull):
            await c.groups[1].set("f9", b"v")
        await c.groups[1].set("f0", b"replaced")  # an existing key still takes writes
        await c.groups[1].delete("f1")
        await c.groups[2].set("f9", b"v")  # room again
        assert c.values("f9") == [b"v"] * 3


async def test_a_node_never_serves_a_value_it_deleted_from_an_owner_that_missed_it() -> None:
    async with cluster(mode="replicated", anti_entropy_interval=3600) as c:
        key = next(f"gone{i}" for i in range(1000) if c.owner_index(f"gone{i}") == 2)
        await c.groups[0].set(key, b"old")
        c.network.down.add(c.urls[2])
        assert await c.groups[1].delete(key) is True  # node 2, the owner, misses it
        c.network.down.clear()
        for node in c.nodes:
            node.peers.succeeded(c.urls[2])  # type: ignore[union-attr]
        assert c.values(key) == [None, None, b"old"]
        for group in c.groups[:2]:
            with pytest.raises(NotFound):  # not the owner's stale copy
                await group.get(key)


async def test_writes_after_a_restart_win_even_behind_a_faster_clock() -> None:
    """A node that restarts with a clock behind the versions it made (or learned)
    before still makes writes that win: each write is stamped above what it knows."""
    network = MemoryNetwork()
    urls = ["http://10.0.0.1:8000", "http://10.0.0.2:8000"]
    clocks = [ManualClock(1_800_000_100.0), ManualClock(1_800_000_000.0)]  # node 0 ahead

    def node(i: int) -> Node:
        config = NodeConfig(self_url=urls[i], peers=tuple(urls))
        return Node(config, transport=network.transport(), clock=clocks[i])

    async with node(0) as n0:
        network.register(urls[0], n0)
        g0 = n0.group("kv", mode="replicated", anti_entropy_interval=3600)
        async with node(1) as n1:
            network.register(urls[1], n1)
            g1 = n1.group("kv", mode="replicated", anti_entropy_interval=3600)
            await g0.set("x", b"from 0")  # stamped 100 s ahead of node 1's clock
            await g1.set("y", b"old")  # observes node 0's clock first: also ahead
        clocks[1].advance(5)  # restarted: empty, and its clock 95 s behind "old"
        async with node(1) as n1:
            network.register(urls[1], n1)
            g1 = n1.group("kv", mode="replicated", anti_entropy_interval=3600)
            assert g1.replica is not None
            await g1.replica.sync_with(n1.peers.view.clients[urls[0]])  # type: ignore[union-attr]
            assert g1.cached_bytes("y") == b"old"
            await g1.set("y", b"new")
            assert g1.cached_bytes("y") == b"new"
            assert g0.cached_bytes("y") == b"new"


async def test_a_peer_in_back_off_still_gets_pushes_in_the_background() -> None:
    async with cluster(mode="replicated", anti_entropy_interval=3600) as c:
        picker = c.nodes[0].peers
        assert picker is not None
        picker.failed(c.urls[2])  # e.g. it was still starting when node 0 first asked
        await c.groups[0].set("k", b"v")  # waits for node 1 only
        await settle(c)
        assert c.values("k") == [b"v"] * 3
        assert picker.backing_off() == []  # the push answered: no longer skipped


async def test_get_or_load_fills_a_replicated_group_everywhere_once() -> None:
    async with cluster(mode="replicated", anti_entropy_interval=3600) as c:
        calls = 0

        async def fill() -> bytes:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.01)
            return b"filled"

        results = await asyncio.gather(*(c.groups[0].get_or_load("f", fill) for _ in range(20)))
        assert results == [b"filled"] * 20
        assert calls == 1
        await settle(c)
        assert c.values("f") == [b"filled"] * 3


async def test_stale_while_revalidate_across_the_cluster() -> None:
    gate = asyncio.Event()
    gate.set()
    async with cluster(gate=gate, ttl=10, stale_while_revalidate=30, hot_admission="never") as c:
        key = c.key_owned_by(1)
        assert await c.groups[0].get(key) == DATA[key]
        c.clock.advance(11)
        c.loaders[1].data[key] = b"fresh"
        gate.clear()
        # The owner serves its expired value to the asking node while it reloads once.
        assert await asyncio.gather(*(c.groups[0].get(key) for _ in range(5))) == [DATA[key]] * 5
        assert c.loaders[1].calls[key] == 2
        gate.set()
        await settle(c)
        assert await c.groups[0].get(key) == b"fresh"
        assert c.loaders[1].calls[key] == 2


async def test_a_replicated_group_works_alone() -> None:
    """Without a node or peers: writes apply here, reads load once, deletes stick."""
    from shoal import GroupConfig

    group: Group[bytes] = Group(
        GroupConfig(name="solo", mode="replicated"), CountingLoader({"a": b"1"})
    )
    assert await group.get("a") == b"1"
    await group.set("b", b"2", ttl=60)
    assert await group.get_many(["a", "b", "c"]) == {"a": b"1", "b": b"2"}
    assert await group.delete("b") is True
    with pytest.raises(NotFound):
        await group.get("b")
    assert await group.invalidate_group() == 1
    assert group.replica is not None
    assert group.statistics().replication == {**group.replica.statistics()}
    await group.aclose()


async def test_a_write_reaches_a_lone_peer_in_back_off() -> None:
    """With every peer skipped after failures, the write returns at once and its push
    still goes out in the background."""
    async with cluster(2, mode="replicated", anti_entropy_interval=3600) as c:
        picker = c.nodes[0].peers
        assert picker is not None
        picker.failed(c.urls[1])
        await c.groups[0].set("k", b"v")
        await settle(c)
        assert c.values("k") == [b"v", b"v"]
