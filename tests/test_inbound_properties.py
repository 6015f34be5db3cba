"""Whatever a node accepts it can encode again: replica messages and shoal.v1 writes.

Every field is drawn from the whole range its protobuf type holds (and TTLs
from every double). A replicated group's :meth:`~shoal.replication.Replica.serve`
either refuses the message with BadRequest, changing nothing, or stores entries
that encode again without error and, sent to a fresh replica, give the very
same state. A write through the client API (``Group.set_bytes``, what the HTTP
API, ``Cache.Set`` and ``SyncGroup.set`` call) either raises InvalidTTL or
stores a value whose expiry every peer protocol can carry.
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helpers.protobuf_strategies import examples
from shoal import Group, InvalidTTL, Node, NodeConfig
from shoal.errors import BadRequest
from shoal.hlc import HLC_MAX, hlc_from_seconds
from shoal.lww import Entry
from shoal.replication import MAX_CLOCK_DRIFT, serve_replica
from shoal.replication import _item as replica_item
from shoal.wire import (
    MAX_EXPIRE_NS,
    ProtocolError,
    decode_get_response,
    encode_get_response,
    encode_set_request,
    expires_at_from_wire,
    to_expire_ns,
)
from shoal.wire._pb import shoal_pb2 as pb
from shoal.wire.replica import ReplicaPush, encode_replica_request

MIRROR = "mirror"
INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
UINT64 = st.integers(0, HLC_MAX)
UINT32 = st.integers(0, (1 << 32) - 1)
NOW = time.time()
# Timestamps near the edges that matter: now, the drift bound, the 64-bit end.
HLCS = st.one_of(
    UINT64,
    st.sampled_from(
        [
            0,
            1,
            hlc_from_seconds(NOW),
            hlc_from_seconds(NOW + MAX_CLOCK_DRIFT - 5),
            hlc_from_seconds(NOW + MAX_CLOCK_DRIFT + 5),
            HLC_MAX,
        ]
    ),
)
EXPIRES = st.one_of(INT64, st.sampled_from([0, MAX_EXPIRE_NS, MAX_EXPIRE_NS + 1, (1 << 63) - 1]))
TEXT = st.text(max_size=12)
NODES = st.one_of(TEXT, st.sampled_from(["n1", "10.0.0.1:8001"]))
ENTRIES = st.builds(
    pb.ReplicaEntry,
    key=TEXT,
    hlc=HLCS,
    node=NODES,
    value=st.none() | st.binary(max_size=16),
    expire=EXPIRES,
)
VERSIONS = st.builds(pb.ReplicaVersion, hlc=HLCS, node=NODES)
PROPERTY = settings(
    max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def replicated() -> Group[bytes]:
    """A replicated group of a node that is not started (no sockets, no tasks)."""
    return Node(NodeConfig()).group(MIRROR, None, mode="replicated", max_key_bytes=64)


def serve(group: Group[bytes], request: pb.ReplicaRequest) -> pb.ReplicaResponse:
    assert group.replica is not None
    request.group = MIRROR
    raw = asyncio.run(serve_replica({MIRROR: group}, request.SerializeToString()))
    return pb.ReplicaResponse.FromString(raw)


def _item(entry: Entry) -> pb.ReplicaEntry:
    """``entry`` as the protobuf message a replica sends it in."""
    raw = encode_replica_request(MIRROR, ReplicaPush([replica_item(entry)]))
    return pb.ReplicaRequest.FromString(raw).push.entries[0]


def snapshot(group: Group[bytes]) -> tuple[int, int, object]:
    assert group.replica is not None
    state = group.replica.state
    return state.root(), len(state), state.cleared


@PROPERTY
@given(st.lists(ENTRIES, max_size=4), st.none() | VERSIONS)
def test_a_push_is_refused_whole_or_stored_as_it_encodes_again(
    entries: list[pb.ReplicaEntry], cleared: pb.ReplicaVersion | None
) -> None:
    group = replicated()
    assert group.replica is not None
    before = snapshot(group)
    push = pb.ReplicaPush(entries=entries)
    if cleared is not None:
        push.cleared.CopyFrom(cleared)
    try:
        serve(group, pb.ReplicaRequest(push=push))
    except BadRequest:
        assert snapshot(group) == before
        event("refused")
        return
    event("stored")
    # Everything stored encodes again and reads back, on a fresh replica, as the same state.
    state = group.replica.state
    again = pb.ReplicaPush(entries=[_item(e) for e in state.entries()])
    if cleared is not None:
        again.cleared.CopyFrom(cleared)
    copy = replicated()
    serve(copy, pb.ReplicaRequest.FromString(pb.ReplicaRequest(push=again).SerializeToString()))
    assert snapshot(copy) == snapshot(group)
    assert copy.replica is not None
    for entry in state.entries():
        twin = copy.replica.state.get(entry.key)
        assert twin is not None
        assert (twin.version, twin.value) == (entry.version, entry.value)
        ns = to_expire_ns(entry.expires_at)
        assert ns is None or abs(ns) <= MAX_EXPIRE_NS


@PROPERTY
@given(UINT64, UINT64, st.none() | VERSIONS, UINT32)
def test_a_digest_is_refused_or_answered(
    root: int, count: int, cleared: pb.ReplicaVersion | None, buckets: int
) -> None:
    group = replicated()
    before = snapshot(group)
    digest = pb.ReplicaDigest(root=root, count=count, buckets=buckets)
    if cleared is not None:
        digest.cleared.CopyFrom(cleared)
    try:
        reply = serve(group, pb.ReplicaRequest(digest=digest))
    except BadRequest:
        assert snapshot(group) == before
        return
    raw = reply.SerializeToString()
    assert pb.ReplicaResponse.FromString(raw) == reply


SUMMARIES = st.builds(pb.ReplicaSummary, key=TEXT, hlc=HLCS, node=NODES)


@PROPERTY
@given(
    st.lists(st.one_of(UINT32, st.integers(0, 1023)), max_size=6), st.lists(SUMMARIES, max_size=4)
)
def test_a_sync_is_refused_or_answered(buckets: list[int], have: list[pb.ReplicaSummary]) -> None:
    group = replicated()
    asyncio.run(group.set_bytes("stored", b"v"))
    before = snapshot(group)
    sync = pb.ReplicaSync(buckets=buckets, have=have)
    try:
        reply = serve(group, pb.ReplicaRequest(sync=sync))
    except BadRequest:
        assert snapshot(group) == before
        return
    assert snapshot(group) == before  # a sync request changes nothing here
    assert pb.ReplicaResponse.FromString(reply.SerializeToString()) == reply


@PROPERTY
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_client_ttl_is_refused_or_stored_as_every_protocol_carries_it(ttl: float) -> None:
    """Group.set_bytes (the HTTP API's PUT, Cache.Set, SyncGroup.set) with any TTL."""
    group = Node(NodeConfig()).group("plain", None)
    try:
        asyncio.run(group.set_bytes("k", b"v", ttl))
    except InvalidTTL:
        assert group.cached_bytes("k") is None
        return
    assert math.isfinite(ttl)
    assert ttl > 0
    hit = group.serve_peer_nowait("k")
    if hit is None:  # a TTL of a few microseconds: already expired
        assert ttl < 1
        return
    ns = to_expire_ns(hit[1])
    assert ns is not None
    assert 0 < ns <= MAX_EXPIRE_NS
    assert decode_get_response(encode_get_response(b"v", expire_ns=ns)).expire_ns == ns
    encode_set_request("plain", "k", b"v", expire_ns=ns)
    assert pb.PeerValue.FromString(pb.PeerValue(expire=ns).SerializeToString()).expire == ns


@PROPERTY
@given(INT64)
def test_a_peer_set_expiry_is_refused_or_sent_again(expire: int) -> None:
    """shoal.v1.PeerSetRequest.expire (any int64) through the check the gRPC server
    applies: refused (negative, or past 2262), or an expiry every protocol carries
    again."""
    raw = pb.PeerSetRequest(group="g", key="k", value=b"v", expire=expire).SerializeToString()
    request = pb.PeerSetRequest.FromString(raw)
    try:
        expires_at = expires_at_from_wire(request.expire, "PeerSetRequest")
    except ProtocolError:
        assert expire > MAX_EXPIRE_NS or expire < 0  # shoal sends 0 for never
        return
    ns = to_expire_ns(expires_at) or 0
    assert pb.PeerValue.FromString(pb.PeerValue(expire=ns).SerializeToString()).expire == ns
    assert decode_get_response(encode_get_response(b"v", expire_ns=ns)).expire_ns == ns
    if expire > 0:
        assert abs(ns - expire) <= 1_000  # a microsecond at most, from the float seconds


@pytest.mark.parametrize("ttl", [1e10, 7.5e9, 1e300])
def test_a_ttl_past_2262_is_invalid(ttl: float) -> None:
    group = Node(NodeConfig()).group("plain", None)
    with pytest.raises(InvalidTTL, match="2262"):
        asyncio.run(group.set_bytes("k", b"v", ttl))
    with pytest.raises(InvalidTTL, match="2262"):
        asyncio.run(group.set_bytes("k", b"v", expires_at=1e300))
