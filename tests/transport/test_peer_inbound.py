"""Every message a node accepts over HTTP is checked against what it can store and
send again, over real sockets: out of range is a 400 (a list over its cap a 413),
nothing is stored, and the node goes on working.

The reproductions: a replica push whose expiry or timestamp is out of range, a
peer ``PUT`` expiring past 2262, an API ``PUT`` with a TTL that ends after it,
and a remove-keys of more keys than a batch may name.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from helpers.peer_nodes import GROUP, Served, http_cluster, serving
from helpers.raw_http import RawResponse, call
from shoal import Group, Node, NodeConfig
from shoal.api.metrics import render_metrics
from shoal.hlc import HLC_MAX, hlc_from_seconds
from shoal.replication import MAX_CLOCK_DRIFT, MAX_PUSH_ENTRIES, MAX_SYNC_SUMMARIES
from shoal.transport.http import HttpPeerClient
from shoal.wire import (
    DEFAULT_BASE_PATH,
    MAX_EXPIRE_NS,
    build_peer_path,
    build_remove_keys_path,
    encode_remove_keys,
    encode_set_request,
)
from shoal.wire._pb import shoal_pb2 as pb
from shoal.wire.batch import REPLICA_SEGMENT, build_group_path

BASE = DEFAULT_BASE_PATH
MIRROR = "mirror"
INT64_MAX = (1 << 63) - 1


async def replica(port: int, request: pb.ReplicaRequest) -> RawResponse:
    request.group = MIRROR
    target = build_group_path(BASE, MIRROR, REPLICA_SEGMENT)
    return await call(port, "POST", target, request.SerializeToString())


def entry(
    key: str = "k",
    *,
    hlc: int | None = None,
    node: str = "elsewhere",
    value: bytes = b"theirs",
    expire: int = 0,
) -> pb.ReplicaEntry:
    """A write of ``key`` stamped now, unless told otherwise."""
    stamp = hlc_from_seconds(time.time()) if hlc is None else hlc
    return pb.ReplicaEntry(key=key, hlc=stamp, node=node, value=value, expire=expire)


def push(*entries: pb.ReplicaEntry, cleared: pb.ReplicaVersion | None = None) -> pb.ReplicaRequest:
    message = pb.ReplicaPush(entries=entries)
    if cleared is not None:
        message.cleared.CopyFrom(cleared)
    return pb.ReplicaRequest(push=message)


@contextlib.asynccontextmanager
async def mirrored() -> AsyncIterator[tuple[Served, Group[bytes]]]:
    async with serving() as served:
        mirror = served.node.group(MIRROR, None, mode="replicated", anti_entropy_interval=3600)
        yield served, mirror


# ------------------------------------------------------------------- replica pushes


async def test_a_push_expiring_past_the_wire_range_is_refused() -> None:
    """expire = int64 max (or anything past 2262) is a 400 and nothing is stored; the
    latest expiry a node accepts is stored and pushed on to a peer without error."""
    async with http_cluster(2) as nodes:
        mirrors = [
            s.node.group(MIRROR, None, mode="replicated", anti_entropy_interval=3600) for s in nodes
        ]
        for expire in (INT64_MAX, MAX_EXPIRE_NS + 1, 9223372036854775000):
            answer = await replica(nodes[0].port, push(entry(expire=expire)))
            assert answer.status == 400, answer
            assert b"latest expiry" in answer.body
        # Varints past the int64 range (9223372036854776382, 11796287686354835510 as
        # sent) read as negative int64s; shoal's nodes never send a negative expiry.
        for sent in (9223372036854776382, 11796287686354835510, (1 << 64) - 1):
            answer = await replica(nodes[0].port, push(entry(expire=sent - (1 << 64))))
            assert answer.status == 400, answer
            assert b"negative" in answer.body
        assert mirrors[0].cached_bytes("k") is None
        assert len(mirrors[0].replica.state) == 0  # type: ignore[union-attr]

        ok = await replica(nodes[0].port, push(entry(expire=MAX_EXPIRE_NS)))
        assert ok.status == 200, ok
        # Node 1 catches up through anti-entropy: node 0 encodes the entry again.
        client = HttpPeerClient(nodes[0].url)
        try:
            assert await mirrors[1].replica.sync_with(client) == 1  # type: ignore[union-attr]
        finally:
            await client.aclose()
        assert mirrors[1].cached_bytes("k") == b"theirs"


async def test_a_timestamp_past_the_clock_drift_is_refused() -> None:
    """hlc = 2**64-1 would lock the key and drag this node's clock past 64 bits: 400,
    nothing stored, and the node's own writes go on. A timestamp within the drift
    the clock allows is taken."""
    async with mirrored() as (served, mirror):
        far = hlc_from_seconds(time.time() + MAX_CLOCK_DRIFT + 60)
        for hlc in (HLC_MAX, far):
            answer = await replica(served.port, push(entry(hlc=hlc)))
            assert answer.status == 400, answer
            assert b"ahead of this node's clock" in answer.body
        assert mirror.cached_bytes("k") is None
        await mirror.set_bytes("k", b"mine")  # before: OverflowError, a 500 per write
        assert mirror.cached_bytes("k") == b"mine"

        near = hlc_from_seconds(time.time() + MAX_CLOCK_DRIFT / 2)
        ok = await replica(served.port, push(entry(hlc=near)))
        assert ok.status == 200, ok
        assert mirror.cached_bytes("k") == b"theirs"


async def test_a_bad_clear_or_node_id_changes_nothing() -> None:
    """A push whose clear is stamped too far ahead, or whose entry has a node id that
    is no node id, is refused whole: the good parts are not applied either."""
    async with mirrored() as (served, mirror):
        await mirror.set_bytes("kept", b"1")
        far = pb.ReplicaVersion(hlc=HLC_MAX, node="elsewhere")
        answer = await replica(served.port, push(entry("new"), cleared=far))
        assert answer.status == 400, answer
        answer = await replica(served.port, push(entry("new"), entry("bad", node="a b\n")))
        assert answer.status == 400, answer
        assert b"node id" in answer.body
        digest = pb.ReplicaRequest(digest=pb.ReplicaDigest(cleared=far))
        assert (await replica(served.port, digest)).status == 400
        assert mirror.cached_bytes("kept") == b"1"
        assert mirror.cached_bytes("new") is None
        replication = mirror.statistics().replication
        assert replication is not None
        assert replication["messages_refused"] == 3
        text = render_metrics([mirror.statistics()]).decode()
        assert f'shoal_replica_messages_refused_total{{group="{MIRROR}"}} 3' in text


async def test_replica_lists_have_caps() -> None:
    """A push of more than MAX_PUSH_ENTRIES entries, a sync of more buckets than the
    group has or more summaries than MAX_SYNC_SUMMARIES: 400 before any work."""
    async with mirrored() as (served, mirror):
        assert mirror.replica is not None
        tiny = pb.ReplicaEntry(key="k", hlc=1, node="n")
        answer = await replica(served.port, push(*[tiny] * (MAX_PUSH_ENTRIES + 1)))
        assert answer.status == 400, answer
        assert b"at most" in answer.body
        buckets = [*range(mirror.replica.state.buckets), 0]
        sync = pb.ReplicaRequest(sync=pb.ReplicaSync(buckets=buckets))
        assert (await replica(served.port, sync)).status == 400
        have = [pb.ReplicaSummary(key="k", hlc=1, node="n")] * (MAX_SYNC_SUMMARIES + 1)
        sync = pb.ReplicaRequest(sync=pb.ReplicaSync(buckets=[0], have=have))
        assert (await replica(served.port, sync)).status == 400
        summary = pb.ReplicaSummary(key="k", hlc=HLC_MAX, node="n")
        sync = pb.ReplicaRequest(sync=pb.ReplicaSync(buckets=[0], have=[summary]))
        assert (await replica(served.port, sync)).status == 400
        assert mirror.cached_bytes("k") is None


# ------------------------------------------------------------- partitioned groups


async def test_a_peer_put_expiring_past_2262_is_refused() -> None:
    """A SetRequest with expire_ns = int64 max is a 400: the key is not poisoned, its
    GET and batch get answer 200."""
    async with serving() as served:
        body = encode_set_request(GROUP, "k", b"poison", expire_ns=INT64_MAX)
        put = await call(served.port, "PUT", build_peer_path(BASE, GROUP, "k"), body)
        assert put.status == 400, put
        assert b"latest expiry" in put.body
        assert served.group.cached_bytes("k") is None
        get = await call(served.port, "GET", build_peer_path(BASE, GROUP, "k"))
        assert get.status == 200, get


async def test_remove_keys_has_a_cap() -> None:
    """_remove-keys/ of more keys than a batch may name is a 413; nothing is removed.
    The peer client splits a larger removal into requests under the cap."""
    async with http_cluster(2) as nodes:
        target = nodes[1]
        keys = [f"k{i}" for i in range(2500)]
        for key in keys:
            await target.group.serve_peer_set(key, b"v", expires_at=None)
        body = encode_remove_keys(GROUP, keys)
        answer = await call(target.port, "POST", build_remove_keys_path(BASE, GROUP), body)
        assert answer.status == 413, answer
        assert target.group.cached_bytes("k0") == b"v"
        client = HttpPeerClient(target.url)
        try:
            assert await client.remove_keys(GROUP, keys) == len(keys)
        finally:
            await client.aclose()
        assert target.group.cached_bytes("k0") is None


# --------------------------------------------------------------------------- API


async def test_api_put_with_a_ttl_past_2262_is_refused() -> None:
    """PUT ?ttl=1e10 (or 1e300) on a replicated group of a node with peers is a 400
    invalid_ttl, nothing is stored, and the node keeps serving; a long TTL that ends
    before 2262 is stored."""
    async with Node(NodeConfig(port=0, api_port=0)) as node, serving() as other:
        assert node.self_url is not None
        node.set_peers([node.self_url, other.url])
        other.node.set_peers([node.self_url, other.url])
        for served in (node, other.node):
            served.group(MIRROR, None, mode="replicated", anti_entropy_interval=0.2)
        assert node.api_address is not None
        port = node.api_address[1]
        for ttl in ("1e10", "1e300", "7.5e9"):
            target = f"/v1/groups/{MIRROR}/keys/k?ttl={ttl}"
            answer = await call(port, "PUT", target, b"x")
            assert answer.status == 400, answer
            assert answer.json()["code"] == "invalid_ttl"
        assert node.groups[MIRROR].cached_bytes("k") is None
        ok = await call(port, "PUT", f"/v1/groups/{MIRROR}/keys/k?ttl=1e9", b"x")
        assert ok.status == 204, ok
        assert other.node.groups[MIRROR].cached_bytes("k") == b"x"  # pushed on
        get = await call(port, "GET", f"/v1/groups/{MIRROR}/keys/k")
        assert (get.status, get.body) == (200, b"x")
