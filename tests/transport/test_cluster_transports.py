"""The read path's rules that hold whatever the peer transport: nodes in one process,
each with its own peer server on 127.0.0.1; every test runs over HTTP and over gRPC."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from helpers.peer_nodes import Served, grpc_cluster, http_cluster, owned_by, value
from shoal import NotFound, RemoteLoadError
from shoal.testing import ManualClock

Cluster = Callable[..., AbstractAsyncContextManager[list[Served]]]


@pytest.fixture(params=["http", "grpc"])
def cluster(request: pytest.FixtureRequest) -> Cluster:
    """``cluster(n, **options)``: ``n`` started nodes that know each other, over the
    transport of the test's parameter."""
    clusters: dict[str, Cluster] = {"http": http_cluster, "grpc": grpc_cluster}
    return clusters[request.param]


async def test_non_owner_fetches_from_the_owner_once(cluster: Cluster) -> None:
    """A miss on a non-owner is loaded by the owner, once, and served to both others."""
    async with cluster(hot_admission="never") as nodes:
        key = owned_by(nodes, 1)
        for _ in range(3):
            assert await nodes[0].group.get(key) == value(key)
            assert await nodes[2].group.get(key) == value(key)
        assert [len(s.loader.calls) for s in nodes] == [0, 1, 0]
        assert nodes[1].group.statistics().server_requests == 6
        assert nodes[0].group.statistics().peer_loads == 3


async def test_expiry_travels_into_the_hot_cache(cluster: Cluster) -> None:
    """The owner's absolute expiry, to the sub-second, reaches the asker's hot copy,
    which expires with it."""
    clock = ManualClock(1_700_000_000.25)
    async with cluster(2, clock=clock, ttl=30, hot_admission="always") as nodes:
        key = owned_by(nodes, 1)
        assert await nodes[0].group.get(key) == value(key)
        assert nodes[0].group.cached_bytes(key) == value(key)
        clock.advance(29)
        assert nodes[0].group.cached_bytes(key) == value(key)
        clock.advance(2)
        assert nodes[0].group.cached_bytes(key) is None


async def test_owner_answers_are_final(cluster: Cluster) -> None:
    """NotFound and a loader failure at the owner reach the asker, which does not load
    the key itself (one failing load per cluster) and counts no peer error."""
    async with cluster(2) as nodes:
        missing = owned_by(nodes, 1, "missing:")
        failing = owned_by(nodes, 1, "fail:")
        with pytest.raises(NotFound):
            await nodes[0].group.get(missing)
        with pytest.raises(RemoteLoadError, match="database down"):
            await nodes[0].group.get(failing)
        assert nodes[0].loader.calls == []
        assert nodes[1].loader.calls == [missing, failing]
        assert nodes[0].group.statistics().peer_errors == 0


async def test_dead_owner_means_a_local_load(cluster: Cluster) -> None:
    """When the owner is gone, the asker counts a peer error and loads the key itself."""
    async with cluster(2, hot_admission="never") as nodes:
        key = owned_by(nodes, 1)
        assert await nodes[0].group.get(key) == value(key)
        await nodes[1].node.aclose()
        other = owned_by(nodes, 1, "other")
        assert await nodes[0].group.get(other) == value(other)
        assert nodes[0].loader.calls == [other]
        assert nodes[0].group.statistics().peer_errors == 1
