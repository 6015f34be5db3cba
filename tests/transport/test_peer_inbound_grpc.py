"""The gRPC services check what they accept as the HTTP routes do, through the same
decoders: out of range is ``INVALID_ARGUMENT`` (a batch over its cap
``RESOURCE_EXHAUSTED``), nothing is stored. Skipped without the ``shoal[grpc]`` extra.
"""

from __future__ import annotations

import time

import pytest

for _module in ("grpc", "grpc_health", "grpc_reflection"):
    pytest.importorskip(_module, reason="needs the shoal[grpc] extra")

import grpc  # noqa: E402

from helpers.grpc_calls import raw_call  # noqa: E402
from helpers.peer_nodes import GROUP, grpc_cluster  # noqa: E402
from shoal.hlc import HLC_MAX, hlc_from_seconds  # noqa: E402
from shoal.wire import MAX_EXPIRE_NS  # noqa: E402
from shoal.wire._pb import shoal_pb2 as pb  # noqa: E402

PEER, CACHE = "/shoal.v1.Peer/", "/shoal.v1.Cache/"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
INT64_MAX = (1 << 63) - 1


async def test_expiries_and_ttls_past_2262_are_invalid_arguments() -> None:
    """Peer.Set with expire = int64 max and Cache.Set with ttl = 1e10 are refused;
    the latest expiry a node accepts is stored."""
    async with grpc_cluster(1) as (node,):
        for expire in (INT64_MAX, MAX_EXPIRE_NS + 1):
            request = pb.PeerSetRequest(group=GROUP, key="k", value=b"v", expire=expire)
            answer = await raw_call(node.port, PEER + "Set", request.SerializeToString())
            assert (answer.status, answer.code) == (INVALID, "bad_request"), answer
            assert "latest expiry" in answer.details
        for ttl in (1e10, 1e300):
            cache_set = pb.SetRequest(group=GROUP, key="k", value=b"v", ttl=ttl)
            answer = await raw_call(node.port, CACHE + "Set", cache_set.SerializeToString())
            assert (answer.status, answer.code) == (INVALID, "invalid_ttl"), answer
        assert node.group.cached_bytes("k") is None
        request = pb.PeerSetRequest(group=GROUP, key="k", value=b"v", expire=MAX_EXPIRE_NS)
        answer = await raw_call(node.port, PEER + "Set", request.SerializeToString())
        assert answer.status is grpc.StatusCode.OK, answer
        value = await raw_call(
            node.port, PEER + "Get", pb.GetRequest(group=GROUP, key="k").SerializeToString()
        )
        assert value.body is not None
        assert pb.PeerValue.FromString(value.body).expire == MAX_EXPIRE_NS


async def test_batches_are_capped_before_duplicates_are_dropped() -> None:
    """RemoveKeys and GetMany of more than 1000 keys, duplicates included, are refused."""
    async with grpc_cluster(1) as (node,):
        for service in (PEER, CACHE):
            for method, message in (
                ("RemoveKeys", pb.RemoveKeysRequest),
                ("GetMany", pb.GetManyRequest),
            ):
                request = message(group=GROUP, keys=["k"] * 1001)
                answer = await raw_call(node.port, service + method, request.SerializeToString())
                assert (answer.status, answer.code) == (
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "too_many_keys",
                ), (service, method, answer)


async def test_replica_timestamps_past_the_drift_are_invalid_arguments() -> None:
    """Peer.Replica refuses an entry stamped 2**64-1 through the same checks as HTTP."""
    async with grpc_cluster(1, mode="replicated", anti_entropy_interval=3600) as (node,):
        for hlc in (HLC_MAX, hlc_from_seconds(time.time() + 3600)):
            entry = pb.ReplicaEntry(key="k", hlc=hlc, node="elsewhere", value=b"v")
            push = pb.ReplicaRequest(group=GROUP, push=pb.ReplicaPush(entries=[entry]))
            answer = await raw_call(node.port, PEER + "Replica", push.SerializeToString())
            assert (answer.status, answer.code) == (INVALID, "bad_request"), answer
        entry = pb.ReplicaEntry(key="k", hlc=1, node="elsewhere", value=b"v", expire=INT64_MAX)
        push = pb.ReplicaRequest(group=GROUP, push=pb.ReplicaPush(entries=[entry]))
        answer = await raw_call(node.port, PEER + "Replica", push.SerializeToString())
        assert (answer.status, answer.code) == (INVALID, "bad_request"), answer
        assert node.group.cached_bytes("k") is None
        await node.group.set_bytes("k", b"mine")
        assert node.group.cached_bytes("k") == b"mine"
