"""The cluster read path over the in-process transport: forwarding, one load per
cluster, failure rules, back-off, the hop rule and the hot cache."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helpers.memory_cluster import DATA, cluster
from shoal import (
    LoadedValueTooLarge,
    NodeConfig,
    NotFound,
    PeerError,
    PeerUnavailable,
    RemoteLoadError,
)
from shoal.api.metrics import render_metrics
from shoal.ring import Ring


async def test_non_owner_fetches_from_the_owner() -> None:
    """A miss on a non-owner is loaded by the owner, cached there, not in the asker's main."""
    async with cluster(hot_admission="never") as c:
        key = c.key_owned_by(1)
        assert await c.groups[0].get(key) == DATA[key]
        assert [loader.total for loader in c.loaders] == [0, 1, 0]
        assert c.groups[1].cached_bytes(key) == DATA[key]
        assert c.groups[0].statistics().main.items == 0
        s = c.groups[0].statistics()
        assert (s.peer_loads, s.peer_errors, s.local_loads) == (1, 0, 0)
        assert c.groups[1].statistics().server_requests == 1


async def test_concurrent_misses_on_every_node_are_one_load() -> None:
    """1,000 concurrent gets of one cold key spread over 3 nodes: one loader call."""
    gate = asyncio.Event()
    async with cluster(gate=gate) as c:
        key = c.key_owned_by(2)
        tasks = [asyncio.create_task(c.groups[i % 3].get(key)) for i in range(1000)]
        await c.loaders[2].started.wait()
        await asyncio.sleep(0.01)  # let every request reach its flight
        gate.set()
        assert set(await asyncio.gather(*tasks)) == {DATA[key]}
        assert c.loads == 1
        assert c.network.requests == 2  # one flight per non-owner node


async def test_unreachable_owner_loads_locally_then_backs_off() -> None:
    """A dead owner costs one peer error, the key loads locally, and the next
    requests skip the dead peer instead of trying it again."""
    async with cluster(hot_admission="never") as c:
        c.network.down.add(c.urls[1])
        first, second = c.key_owned_by(1), c.key_owned_by(1, skip=1)
        assert await c.groups[0].get(first) == DATA[first]
        assert c.loaders[0].calls[first] == 1
        assert c.groups[0].statistics().peer_errors == 1
        requests = c.network.requests
        assert await c.groups[0].get(second) == DATA[second]
        assert c.network.requests == requests  # in back-off: not asked
        assert c.groups[0].peers is not None
        assert c.groups[0].peers.backing_off() == [c.urls[1]]


async def test_owner_not_found_is_not_loaded_again() -> None:
    """The owner says NotFound: the asker raises it and never calls its own loader."""
    async with cluster() as c:
        key = next(k for k in (f"nobody{i}" for i in range(100)) if c.owner_index(k) == 1)
        with pytest.raises(NotFound):
            await c.groups[0].get(key)
        assert c.loaders[0].total == 0
        assert c.loaders[1].calls[key] == 1


async def test_owner_loader_failure_is_not_loaded_again() -> None:
    """The owner's loader fails: RemoteLoadError, no second load on the asker."""
    async with cluster() as c:
        key = c.key_owned_by(1)
        c.loaders[1].data = {}
        calls = 0

        async def broken(k: str) -> bytes:
            nonlocal calls
            calls += 1
            raise RuntimeError("database down")

        c.groups[1]._loader = broken
        with pytest.raises(RemoteLoadError, match="database down"):
            await c.groups[0].get(key)
        assert calls == 1
        assert c.loaders[0].total == 0


async def test_disagreeing_rings_do_not_loop() -> None:
    """Each node thinks the other owns the key: each loads once, nobody forwards twice."""

    def configs(url: str, peers: tuple[str, ...]) -> NodeConfig:
        return NodeConfig(self_url=url, peers=peers, replicas=1 if url == peers[0] else 3)

    async with cluster(2, configs=configs, hot_admission="never") as c:
        a, b = c.urls
        ring_a = Ring.build([a, b], replicas=1)
        ring_b = Ring.build([a, b], replicas=3)
        key = next(k for k in DATA if ring_a.owner(k) == b and ring_b.owner(k) == a)
        results = await asyncio.wait_for(
            asyncio.gather(c.groups[0].get(key), c.groups[1].get(key)), timeout=5
        )
        assert list(results) == [DATA[key], DATA[key]]
        assert c.network.requests == 2
        assert c.loads <= 2


@pytest.mark.parametrize(
    ("admission", "options", "fetches"),
    [("always", {}, 1), ("never", {}, 4), ("rate", {"hot_rate_count": 2}, 2)],
)
async def test_hot_cache_admission(admission: str, options: dict[str, Any], fetches: int) -> None:
    """always: kept after the first fetch; never: fetched every time; rate: kept once
    fetched hot_rate_count times."""
    async with cluster(hot_admission=admission, **options) as c:
        key = c.key_owned_by(1)
        for _ in range(4):
            assert await c.groups[0].get(key) == DATA[key]
        assert c.groups[0].statistics().peer_loads == fetches
        assert c.loads == 1


async def test_hot_copy_keeps_the_owners_expiry() -> None:
    """A hot copy expires when the owner's value does (absolute expiry travels)."""
    async with cluster(hot_admission="always", ttl=30) as c:
        key = c.key_owned_by(1)
        await c.groups[0].get(key)
        owner_expiry = c.groups[1]._main.expiry(key)
        assert owner_expiry is not None
        assert c.groups[0]._hot.expiry(key) == owner_expiry


async def test_membership_change_swaps_the_ring() -> None:
    """set_peers: a node removed from the list owns nothing; its keys move to the others."""
    async with cluster(hot_admission="never") as c:
        key = c.key_owned_by(2)
        for node in c.nodes[:2]:
            node.set_peers(c.urls[:2])
        assert await c.groups[0].get(key) == DATA[key]
        assert c.loaders[2].total == 0
        assert c.nodes[0].peers is not None
        assert c.nodes[0].peers.view.ring.nodes == tuple(c.urls[:2])


async def test_get_many_asks_each_owner_once() -> None:
    """get_many groups the misses by owner: one request per peer, the rest local."""
    async with cluster(hot_admission="never") as c:
        keys = [c.key_owned_by(i, skip=s) for i in range(3) for s in range(3)] + ["nobody"]
        got = await c.groups[0].get_many(keys)
        assert got == {k: DATA[k] for k in keys if k in DATA}
        assert c.network.requests == 2  # one batch per peer
        assert c.loaders[0].total == 3 + (1 if c.owner_index("nobody") == 0 else 0)


async def test_get_many_falls_back_when_a_peer_is_down() -> None:
    """A dead owner's keys in a batch load locally."""
    async with cluster(hot_admission="never") as c:
        c.network.down.add(c.urls[2])
        keys = [c.key_owned_by(2, skip=s) for s in range(3)]
        assert await c.groups[0].get_many(keys) == {k: DATA[k] for k in keys}
        assert c.loaders[0].total == 3
        assert c.groups[0].statistics().peer_errors >= 1


async def test_an_unreachable_owner_without_a_loader_here_is_unavailable_not_not_found() -> None:
    """Keys that exist only at their owner (set there, no loader anywhere): while the
    owner cannot be reached, a get elsewhere raises PeerUnavailable, at once once the
    owner is suspect, and nothing is remembered as missing."""
    async with cluster(hot_admission="never", negative_ttl=60.0) as c:
        plain = [node.group("plain", hot_admission="never") for node in c.nodes]  # no loader
        group = plain[0]
        key = c.key_owned_by(1)
        await plain[1].set(key, b"only here")
        assert await group.get(key) == b"only here"
        c.network.down.add(c.urls[1])
        for _ in range(2):
            with pytest.raises(PeerUnavailable) as info:
                await group.get(key)
            assert not isinstance(info.value, NotFound)
            assert isinstance(info.value, PeerError)
        assert group.statistics().peer_errors == 1  # the second failed over at once
        c.network.down.clear()
        assert c.groups[0].peers is not None
        c.groups[0].peers.succeeded(c.urls[1])
        assert await group.get(key) == b"only here"


async def test_a_loader_that_does_not_know_a_key_of_an_unreachable_owner_is_unavailable() -> None:
    """The owner may hold a value its loader does not know (set there): with the owner
    unreachable, the local loader's NotFound is no proof, so the answer is
    PeerUnavailable and no negative entry is kept."""
    async with cluster(hot_admission="never", negative_ttl=60.0) as c:
        key = next(k for k in (f"set-only{i}" for i in range(100)) if c.owner_index(k) == 1)
        await c.groups[1].set(key, b"written")
        c.network.down.add(c.urls[1])
        with pytest.raises(PeerUnavailable, match="does not know the key"):
            await c.groups[0].get(key)
        assert c.loaders[0].calls[key] == 1
        c.network.down.clear()
        c.groups[0].peers.succeeded(c.urls[1])  # type: ignore[union-attr]
        assert await c.groups[0].get(key) == b"written"  # not cached as missing


async def test_loads_slower_than_peer_timeout_are_counted_as_duplicates() -> None:
    """A loader slower than peer_timeout: a non-owner that times out loads the key
    too, and says so in duplicate_loads; the loads in the cluster stay within the
    keys plus the counted duplicates."""
    async with cluster(hot_admission="never", peer_timeout=0.05) as c:
        calls = 0

        async def slow(key: str) -> bytes:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.1)
            return DATA[key]

        for group in c.groups:
            group._loader = slow
        keys = [k for k in DATA if c.owner_index(k) == 1][:10]
        first = await asyncio.gather(*(c.groups[0].get(k) for k in keys[:5]))
        rest = [await c.groups[0].get(k) for k in keys[5:]]
        assert first + rest == [DATA[k] for k in keys]
        await asyncio.sleep(0.15)  # the owner's loads that nobody waits for end too
        duplicates = c.groups[0].statistics().duplicate_loads
        assert duplicates == 5  # the five asked while the owner was thought healthy
        assert calls <= len(keys) + duplicates
        metrics = render_metrics([c.groups[0].statistics()])
        assert b'shoal_duplicate_loads_total{group="scores"} 5\n' in metrics


async def test_a_loaded_value_over_max_value_bytes_is_an_error_and_not_cached() -> None:
    async with cluster(max_value_bytes=100) as c:
        key = c.key_owned_by(0)
        c.loaders[0].data[key] = b"x" * 101
        for _ in range(2):
            with pytest.raises(LoadedValueTooLarge, match="max_value_bytes=100"):
                await c.groups[0].get(key)
        stats = c.groups[0].statistics()
        assert (stats.oversized_values, stats.local_load_errors, stats.main.items) == (2, 2, 0)
        with pytest.raises(RemoteLoadError):  # asked elsewhere: the owner's load failed
            await c.groups[1].get(key)
        c.loaders[0].data[key] = b"x" * 100
        assert await c.groups[1].get(key) == b"x" * 100
