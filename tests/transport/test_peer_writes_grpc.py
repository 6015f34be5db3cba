"""The write side of the gRPC transport over real sockets: nodes in one process, each
with a gRPC server on 127.0.0.1.

``shoal.v1.Peer``'s Set, RemoveKeys and Invalidate change the receiving node only;
``shoal.v1.Cache``'s Set, Delete, RemoveKeys and Invalidate run that node's whole
write path; ``Peer.Replica`` carries a replicated group's messages, which converge
across three nodes; a full replicated group is ``RESOURCE_EXHAUSTED`` with
``shoal-code: group_full``. Skipped without the ``shoal[grpc]`` extra.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

for _module in ("grpc", "grpc_health", "grpc_reflection"):
    pytest.importorskip(_module, reason="needs the shoal[grpc] extra")

import grpc  # noqa: E402

from helpers.grpc_calls import Answer, raw_call  # noqa: E402
from helpers.peer_nodes import (  # noqa: E402
    GROUP,
    Served,
    cached,
    grpc_cluster,
    loads,
    owned_by,
    value,
    warm,
)
from shoal import GroupFull  # noqa: E402
from shoal.hlc import hlc_from_seconds  # noqa: E402
from shoal.lww import DEFAULT_BUCKETS  # noqa: E402
from shoal.transport.grpc import GrpcNodeClient, GrpcPeerClient  # noqa: E402
from shoal.wire._pb import shoal_pb2 as pb  # noqa: E402

OK = grpc.StatusCode.OK
PEER, CACHE = "/shoal.v1.Peer/", "/shoal.v1.Cache/"
MIRROR = "mirror"
"""A replicated group."""


# ------------------------------------------------------------------------------ kit


def ok(answer: Answer) -> bytes:
    """The body of a successful call."""
    assert answer.status is OK, answer
    assert answer.body is not None
    return answer.body


@asynccontextmanager
async def node_client(served: Served) -> AsyncIterator[GrpcNodeClient]:
    """A ``shoal.v1.Cache`` client of one node, closed afterwards."""
    client = GrpcNodeClient(served.url)
    try:
        yield client
    finally:
        await client.aclose()


def _peer_set(key: str, data: bytes, group: str = GROUP) -> bytes:
    return pb.PeerSetRequest(group=group, key=key, value=data).SerializeToString()


def _remove(*keys: str, group: str = GROUP) -> bytes:
    return pb.RemoveKeysRequest(group=group, keys=keys).SerializeToString()


def _invalidate(group: str = GROUP) -> bytes:
    return pb.InvalidateRequest(group=group).SerializeToString()


# -------------------------------------------------------------- Peer: this node only


async def test_peer_set_changes_the_receiving_node_only() -> None:
    """Peer.Set stores the value on the node called and nowhere else: the owner and
    the other hot copies keep the old value."""
    async with grpc_cluster(hot_admission="always") as nodes:
        key = owned_by(nodes, 1)
        await warm(nodes, key)
        body = ok(await raw_call(nodes[2].port, PEER + "Set", _peer_set(key, b"peer-set")))
        assert body == b""  # SetResponse has no fields
        assert cached(nodes, key) == [value(key), value(key), b"peer-set"]
        unknown = await raw_call(nodes[2].port, PEER + "Set", _peer_set(key, b"x", "nope"))
        assert (unknown.status, unknown.code) == (grpc.StatusCode.NOT_FOUND, "unknown_group")
        bad_key = await raw_call(nodes[2].port, PEER + "Set", _peer_set("", b"x"))
        assert (bad_key.status, bad_key.code) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_key")


async def test_peer_remove_keys_changes_the_receiving_node_only() -> None:
    """Peer.RemoveKeys drops the keys on the node called and counts those it had."""
    async with grpc_cluster(hot_admission="always") as nodes:
        mine, theirs = owned_by(nodes, 0), owned_by(nodes, 1)
        await warm(nodes, mine, theirs)
        request = _remove(mine, theirs, "never-seen", mine)
        body = ok(await raw_call(nodes[0].port, PEER + "RemoveKeys", request))
        assert pb.RemoveKeysResponse.FromString(body).removed == 2
        assert cached(nodes, mine) == [None, value(mine), value(mine)]
        assert cached(nodes, theirs) == [None, value(theirs), value(theirs)]
        body = ok(await raw_call(nodes[0].port, PEER + "RemoveKeys", _remove(mine, theirs)))
        assert pb.RemoveKeysResponse.FromString(body).removed == 0


async def test_peer_invalidate_empties_the_receiving_node_only() -> None:
    """Peer.Invalidate empties the group on the node called (main and hot caches) and
    says how many keys it had; the other nodes keep theirs."""
    async with grpc_cluster(hot_admission="always") as nodes:
        keys = [owned_by(nodes, i, f"inv{i}-") for i in range(3)]
        await warm(nodes, *keys)
        body = ok(await raw_call(nodes[1].port, PEER + "Invalidate", _invalidate()))
        assert pb.InvalidateResponse.FromString(body).removed == 3
        for key in keys:
            assert cached(nodes, key) == [value(key), None, value(key)]
        unknown = await raw_call(nodes[1].port, PEER + "Invalidate", _invalidate("nope"))
        assert (unknown.status, unknown.code) == (grpc.StatusCode.NOT_FOUND, "unknown_group")


async def test_the_peer_client_speaks_the_peer_service() -> None:
    """GrpcPeerClient's writes are the Peer calls: they change the peer only."""
    async with grpc_cluster(hot_admission="always") as nodes:
        key = owned_by(nodes, 1)
        await warm(nodes, key)
        client = GrpcPeerClient(nodes[1].url)
        try:
            await client.set(GROUP, key, b"direct")
            assert cached(nodes, key) == [value(key), b"direct", value(key)]
            assert await client.remove_keys(GROUP, [key, "other"]) == 1
            assert cached(nodes, key) == [value(key), None, value(key)]
            await client.set(GROUP, "x", b"1")
            await client.set(GROUP, "y", b"2")
            assert await client.invalidate(GROUP) == 2
            assert nodes[1].group.live_entries() == 0
            assert cached(nodes, key) == [value(key), None, value(key)]
        finally:
            await client.aclose()


# ----------------------------------------------------------- Cache: the write path


async def test_cache_set_on_a_non_owner_reaches_the_owner_and_drops_hot_copies() -> None:
    """Cache.Set on a non-owner stores the value at the owner and drops every other
    copy; every node then reads the new value, and nothing is loaded again."""
    async with grpc_cluster(hot_admission="always") as nodes:
        key = owned_by(nodes, 1)
        await warm(nodes, key)
        async with node_client(nodes[0]) as client:
            await client.set(GROUP, key, b"new")
        assert cached(nodes, key) == [None, b"new", None]
        for served in nodes:
            assert await served.group.get(key) == b"new"
        assert loads(nodes) == 1


async def test_cache_set_raw_call_runs_the_write_path() -> None:
    """The same through a raw Cache.Set call, on the third node, with a TTL."""
    async with grpc_cluster(hot_admission="always") as nodes:
        key = owned_by(nodes, 0)
        await warm(nodes, key)
        request = pb.SetRequest(group=GROUP, key=key, value=b"raw", ttl=60)
        assert ok(await raw_call(nodes[2].port, CACHE + "Set", request.SerializeToString())) == b""
        assert cached(nodes, key) == [b"raw", None, None]


async def test_cache_delete_and_remove_keys_remove_everywhere() -> None:
    """Cache.Delete and Cache.RemoveKeys drop the keys on every node; the counts are
    the owners'."""
    async with grpc_cluster(hot_admission="always") as nodes:
        keys = [owned_by(nodes, i, f"del{i}-") for i in range(3)]
        await warm(nodes, *keys)
        async with node_client(nodes[2]) as client:
            assert await client.delete(GROUP, keys[0]) is True
            assert cached(nodes, keys[0]) == [None, None, None]
            assert await client.delete(GROUP, keys[0]) is False
            assert await client.remove_keys(GROUP, [keys[1], keys[2], "never-seen"]) == 2
        for key in keys:
            assert cached(nodes, key) == [None, None, None]
        for served in nodes:
            assert await served.group.get(keys[1]) == value(keys[1])
        assert nodes[1].loader.calls.count(keys[1]) == 2


async def test_cache_invalidate_empties_every_node() -> None:
    """Cache.Invalidate on one node empties the group everywhere and says how many
    keys that node had."""
    async with grpc_cluster(hot_admission="always") as nodes:
        keys = [owned_by(nodes, i, f"all{i}-") for i in range(3)]
        await warm(nodes, *keys)
        body = ok(await raw_call(nodes[0].port, CACHE + "Invalidate", _invalidate()))
        assert pb.InvalidateResponse.FromString(body).removed == 3
        assert [s.group.live_entries() for s in nodes] == [0, 0, 0]
        for key in keys:
            assert cached(nodes, key) == [None, None, None]
        unknown = await raw_call(nodes[0].port, CACHE + "Invalidate", _invalidate("nope"))
        assert (unknown.status, unknown.code) == (grpc.StatusCode.NOT_FOUND, "unknown_group")


# -------------------------------------------------------------------- replicated groups


def _digest(group: str) -> bytes:
    """A digest of an empty state."""
    digest = pb.ReplicaDigest(buckets=DEFAULT_BUCKETS)
    request = pb.ReplicaRequest(group=group, digest=digest)
    return request.SerializeToString()


async def test_peer_replica_checks_its_input() -> None:
    """Peer.Replica: garbage is INVALID_ARGUMENT, an unknown group NOT_FOUND; a valid
    digest gets a ReplicaResponse, and a push is applied."""
    async with grpc_cluster(1, mode="replicated", anti_entropy_interval=3600) as (node,):
        port = node.port
        assert node.group.replica is not None
        assert node.group.replica.state.buckets == DEFAULT_BUCKETS
        garbage = await raw_call(port, PEER + "Replica", b"\x0a\x05ab")
        assert (garbage.status, garbage.code) == (grpc.StatusCode.INVALID_ARGUMENT, "bad_request")
        unknown = await raw_call(port, PEER + "Replica", _digest("nope"))
        assert (unknown.status, unknown.code) == (grpc.StatusCode.NOT_FOUND, "unknown_group")

        reply = pb.ReplicaResponse.FromString(
            ok(await raw_call(port, PEER + "Replica", _digest(GROUP)))
        )
        assert (reply.WhichOneof("kind"), reply.digest.in_sync) == ("digest", True)

        entry = pb.ReplicaEntry(
            key="b", hlc=hlc_from_seconds(time.time()), node="elsewhere", value=b"2"
        )
        push = pb.ReplicaRequest(group=GROUP, push=pb.ReplicaPush(entries=[entry]))
        body = ok(await raw_call(port, PEER + "Replica", push.SerializeToString()))
        reply = pb.ReplicaResponse.FromString(body)
        assert (reply.WhichOneof("kind"), reply.pushed.applied) == ("pushed", 1)
        assert node.group.cached_bytes("b") == b"2"


async def test_peer_replica_refuses_a_partitioned_group() -> None:
    """A replica message for a group that is not replicated is INVALID_ARGUMENT."""
    async with grpc_cluster(1) as (node,):
        answer = await raw_call(node.port, PEER + "Replica", _digest(GROUP))
        assert (answer.status, answer.code) == (grpc.StatusCode.INVALID_ARGUMENT, "bad_request")
        assert "not replicated" in answer.details


async def test_replicated_group_converges_over_grpc() -> None:
    """A replicated group across 3 gRPC nodes: a set (through the group or Cache.Set)
    is on every node when it returns; a delete is gone everywhere, and so is every
    key after an invalidation."""
    async with grpc_cluster(mode="replicated", anti_entropy_interval=3600) as nodes:
        groups = [s.group for s in nodes]
        for served in nodes:  # pushes travel as Peer.Replica calls
            picker = served.node.peers
            assert picker is not None
            assert all(isinstance(c, GrpcPeerClient) for c in picker.view.clients.values())
        await groups[0].set_bytes("a", b"1")
        assert cached(nodes, "a") == [b"1"] * 3
        async with node_client(nodes[1]) as client:
            await client.set(GROUP, "a", b"2")
            assert cached(nodes, "a") == [b"2"] * 3
            await client.set(GROUP, "b", b"3")
            assert cached(nodes, "b") == [b"3"] * 3
            assert await client.delete(GROUP, "a") is True
            assert cached(nodes, "a") == [None] * 3
        assert await groups[2].delete("b") is True
        assert cached(nodes, "b") == [None] * 3

        for i in range(4):
            await groups[i % 3].set_bytes(f"c{i}", b"x")
        assert [g.live_entries() for g in groups] == [4, 4, 4]
        body = ok(await raw_call(nodes[2].port, CACHE + "Invalidate", _invalidate()))
        assert pb.InvalidateResponse.FromString(body).removed == 4
        assert [g.live_entries() for g in groups] == [0, 0, 0]
        await groups[1].set_bytes("after", b"y")
        assert cached(nodes, "after") == [b"y"] * 3
        for group in groups:
            assert group.replica is not None
            stats = group.replica.statistics()
            assert stats["push_failures"] == 0, stats


async def test_a_full_replicated_group_is_resource_exhausted() -> None:
    """Cache.Set of a second key into a replicated group of one entry is
    RESOURCE_EXHAUSTED with shoal-code group_full (GroupFull through the node client);
    the first key is untouched, and a key already there still takes writes."""
    async with grpc_cluster(
        mode="replicated", capacity_entries=1, anti_entropy_interval=3600
    ) as nodes:
        first = pb.SetRequest(group=GROUP, key="a", value=b"1").SerializeToString()
        ok(await raw_call(nodes[0].port, CACHE + "Set", first))
        assert cached(nodes, "a") == [b"1"] * 3
        second = pb.SetRequest(group=GROUP, key="b", value=b"2").SerializeToString()
        for node in nodes:
            full = await raw_call(node.port, CACHE + "Set", second)
            assert (full.status, full.code) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "group_full")
        peer_full = await raw_call(nodes[1].port, PEER + "Set", _peer_set("b", b"2"))
        assert (peer_full.status, peer_full.code) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "group_full",
        )
        async with node_client(nodes[2]) as client:
            with pytest.raises(GroupFull):
                await client.set(GROUP, "b", b"2")
            await client.set(GROUP, "a", b"again")
        assert cached(nodes, "a") == [b"again"] * 3
        assert cached(nodes, "b") == [None] * 3
