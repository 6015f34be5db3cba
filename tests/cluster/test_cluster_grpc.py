"""A cluster of real ``shoal serve --transport grpc`` processes: the scenarios of the HTTP
cluster (forwarding, one load per key, hot copies, an owner killed under load, malformed
requests) over gRPC, plus what a gRPC tool sees (reflection, health) and the smart client."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

import shoal
from helpers.grpc_calls import health_check, raw_call
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
from shoal.wire._pb import shoal_pb2 as pb

GROUP = "data"
LOAD_DELAY = 0.2
"""Seconds each load takes: long enough that concurrent requests overlap the load."""


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CountedCluster]:
    """Three gRPC nodes serving ``data`` through ``helpers.loadlog:load`` and the SlowDB demo
    group ``scores``, with ``--hot-admission always``; the tests use distinct keys."""
    loads = LoadLog(tmp_path_factory.mktemp("loads") / "calls")
    with shoal_cluster(
        3,
        "--transport",
        "grpc",
        "--group",
        "data=helpers.loadlog:load",
        "--slowdb",
        "--slowdb-delay",
        "0",
        "--hot-admission",
        "always",
        env=loads.env(LOAD_DELAY),
    ) as cluster:
        yield CountedCluster(cluster, loads)


def target(node: ShoalServer) -> str:
    """The node's gRPC address."""
    assert node.peer_port is not None
    return f"127.0.0.1:{node.peer_port}"


def http_json(url: str) -> Any:
    """GET ``url`` and decode its JSON."""
    status, body = http_get(url)
    assert status == 200, body
    return json.loads(body)


def stats(node: ShoalServer, group: str = GROUP) -> dict[str, Any]:
    """A group's statistics on ``node`` (from the HTTP API, which a gRPC node also has)."""
    return group_stats(node, group)


async def get(node: ShoalServer, key: str, group: str = GROUP) -> tuple[grpc.StatusCode, bytes]:
    """``shoal.v1.Cache/Get`` on ``node``: the status and the value."""
    request = pb.GetRequest(group=group, key=key).SerializeToString()
    answer = await raw_call(target(node), "/shoal.v1.Cache/Get", request, deadline=30)
    value = pb.GetResponse.FromString(answer.body).value if answer.body is not None else b""
    return answer.status, value


OK = grpc.StatusCode.OK


# --------------------------------------------------------------------------- the read path


async def test_a_non_owner_forwards_to_the_owner(counted: CountedCluster) -> None:
    """A miss on a node that does not own the key is loaded by the owner, once, and
    fetched over gRPC."""
    c, loads = counted.cluster, counted.loads
    (key,) = c.keys_owned_by(1, "forward")
    asker, owner = c.nodes[0], c.nodes[1]
    before = stats(owner)
    assert await get(asker, key) == (OK, loaded_value(key))
    assert loads.nodes(key) == [owner.peer_url]
    after = stats(owner)
    assert after["local_loads"] == before["local_loads"] + 1
    assert after["server_requests"] == before["server_requests"] + 1  # the peer request
    assert stats(asker)["peer_loads"] >= 1
    assert f"miss '{key}' -> fetched from {owner.peer_url}" in asker.stderr()


def test_the_banner_names_grpc_and_a_grpcurl_line(counted: CountedCluster) -> None:
    """Each node says it speaks gRPC on its peer port and how to ask it with grpcurl."""
    for node in counted.cluster.nodes:
        banner = node.stdout()
        assert f"is {node.peer_url} (gRPC on {target(node)}, ring shoal)" in banner
        assert (
            f"""grpcurl -plaintext -d '{{"group":"scores","key":"Tom"}}' {target(node)} """
            "pb.GroupCache/Get" in banner
        )


async def test_1000_concurrent_cold_requests_are_one_load_per_key(
    counted: CountedCluster,
) -> None:
    """1,000 concurrent gRPC gets of 10 cold keys spread over the three nodes: the
    loader runs once per key in the whole cluster, on the key's owner."""
    c, loads = counted.cluster, counted.loads
    keys = [f"burst-{i}" for i in range(10)]
    channels = [grpc.aio.insecure_channel(target(node)) for node in c.nodes]
    try:
        methods: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
            ch.unary_unary("/shoal.v1.Cache/Get") for ch in channels
        ]

        async def one(i: int) -> tuple[str, grpc.StatusCode, bytes]:
            key = keys[i % len(keys)]
            request = pb.GetRequest(group=GROUP, key=key).SerializeToString()
            try:
                raw: bytes = await methods[i % 3](request, timeout=30)
            except grpc.aio.AioRpcError as exc:
                return key, exc.code(), b""
            return key, OK, pb.GetResponse.FromString(raw).value

        answers = await asyncio.gather(*(one(i) for i in range(1000)))
    finally:
        for channel in channels:
            await channel.close()
    assert [(k, s, v) for k, s, v in answers if (s, v) != (OK, loaded_value(k))] == []
    for key in keys:
        assert loads.nodes(key) == [c.nodes[c.owner(key)].peer_url], key


async def test_a_hot_copy_spares_the_owner(counted: CountedCluster) -> None:
    """With --hot-admission always, the second get on a non-owner is a hot hit."""
    c = counted.cluster
    (key,) = c.keys_owned_by(2, "hot")
    asker, owner = c.nodes[0], c.nodes[2]
    assert await get(asker, key) == (OK, loaded_value(key))
    served = stats(owner)["server_requests"]
    hot_hits = stats(asker)["hot"]["hits"]
    assert await get(asker, key) == (OK, loaded_value(key))
    assert stats(owner)["server_requests"] == served
    assert stats(asker)["hot"]["hits"] == hot_hits + 1


async def test_a_missing_key_is_not_found_everywhere(counted: CountedCluster) -> None:
    """The owner's NotFound travels back as NOT_FOUND; nobody loads it twice."""
    c, loads = counted.cluster, counted.loads
    (key,) = c.keys_owned_by(1, "missing")
    request = pb.GetRequest(group=GROUP, key=key).SerializeToString()
    answer = await raw_call(target(c.nodes[0]), "/shoal.v1.Cache/Get", request)
    assert (answer.status, answer.code) == (grpc.StatusCode.NOT_FOUND, "not_found")
    assert loads.nodes(key) == [c.nodes[1].peer_url]


async def test_cluster_call_matches_the_http_view(counted: CountedCluster) -> None:
    """shoal.v1.Cache/Cluster on any node: the members, ring and owner /v1/cluster shows."""
    c = counted.cluster
    for i, node in enumerate(c.nodes):
        (key,) = c.keys_owned_by((i + 1) % 3, "whose")
        request = pb.ClusterRequest(key=key).SerializeToString()
        answer = await raw_call(target(node), "/shoal.v1.Cache/Cluster", request)
        assert answer.body is not None
        reply = pb.ClusterResponse.FromString(answer.body)
        view = http_json(f"{node.url}/v1/cluster?key={key}")
        assert (reply.self, reply.owner, reply.transport) == (
            node.peer_url,
            c.nodes[(i + 1) % 3].peer_url,
            "grpc",
        )
        assert (view["self"], view["owner"], view["transport"]) == (
            reply.self,
            reply.owner,
            reply.transport,
        )
        assert [m.url for m in reply.members] == [m["url"] for m in view["members"]] == c.urls
        assert [m.share for m in reply.members] == [m["share"] for m in view["members"]]
        assert (reply.ring.flavour, reply.ring.replicas, reply.ring.probes) == ("shoal", 160, 8)


# --------------------------------------------------------------------------- bad requests


def _get_bytes(group: str, key: str) -> bytes:
    return pb.GetRequest(group=group, key=key).SerializeToString()


_S = grpc.StatusCode
BAD: list[tuple[str, str, bytes, grpc.StatusCode]] = [
    ("garbage", "/shoal.v1.Cache/Get", b"\xff\xfe garbage \x00\x01", _S.INVALID_ARGUMENT),
    ("truncated", "/shoal.v1.Peer/Get", _get_bytes(GROUP, "truncated")[:-3], _S.INVALID_ARGUMENT),
    ("bad-utf8", "/shoal.v1.Peer/Get", b"\x0a\x04data\x12\x01\xff", _S.INVALID_ARGUMENT),
    ("unknown-group", "/shoal.v1.Cache/Get", _get_bytes("no-such-group", "k"), _S.NOT_FOUND),
    ("empty-key", "/pb.GroupCache/Get", _get_bytes(GROUP, ""), _S.INVALID_ARGUMENT),
    ("long-key", "/shoal.v1.Peer/Get", _get_bytes(GROUP, "k" * 2000), _S.RESOURCE_EXHAUSTED),
    (
        "huge-message",  # over the node's max_body_bytes (16 MiB by default)
        "/shoal.v1.Cache/Get",
        _get_bytes(GROUP, "k" * (17 << 20)),
        _S.RESOURCE_EXHAUSTED,
    ),
    (
        "too-many-keys",
        "/shoal.v1.Peer/GetMany",
        pb.GetManyRequest(group=GROUP, keys=[f"m{i}" for i in range(1001)]).SerializeToString(),
        _S.RESOURCE_EXHAUSTED,
    ),
    ("unknown-method", "/shoal.v1.Cache/Brew", b"", _S.UNIMPLEMENTED),
    ("unknown-service", "/shoal.v2.Cache/Get", b"", _S.UNIMPLEMENTED),
]


@pytest.mark.parametrize(
    ("path", "body", "status"), [case[1:] for case in BAD], ids=[case[0] for case in BAD]
)
async def test_malformed_grpc_requests_get_their_status(
    counted: CountedCluster, path: str, body: bytes, status: grpc.StatusCode
) -> None:
    """Bad input on the gRPC port gets its status code; it stores nothing and the node
    keeps serving."""
    c = counted.cluster
    node = c.nodes[0]
    items = stats(node)["main"]["items"]
    answer = await raw_call(target(node), path, body)
    assert answer.status is status, answer.details
    (key,) = c.keys_owned_by(0, f"after-{zlib.crc32(path.encode() + body[:4096])}")
    assert await get(node, key) == (OK, loaded_value(key))
    assert stats(node)["main"]["items"] == items + 1
    assert node.proc.poll() is None


# --------------------------------------------------------------------------- tools


def test_reflection_serves_what_grpcurl_needs(counted: CountedCluster) -> None:
    """As grpcurl does: list the services by reflection, build the request and answer
    types from reflected descriptors only, and call pb.GroupCache/Get for Tom."""
    with grpc.insecure_channel(target(counted.cluster.nodes[1])) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {
            "pb.GroupCache",
            "shoal.v1.Cache",
            "shoal.v1.Peer",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        } <= services
        pool = descriptor_pool.DescriptorPool(database)  # nothing from this process
        method = pool.FindServiceByName("pb.GroupCache").methods_by_name["Get"]
        request_type = message_factory.GetMessageClass(method.input_type)
        reply_type = message_factory.GetMessageClass(method.output_type)
        request = json_format.Parse('{"group":"scores","key":"Tom"}', request_type())
        call = channel.unary_unary(
            "/pb.GroupCache/Get",
            request_serializer=request_type.SerializeToString,
            response_deserializer=reply_type.FromString,
        )
        reply = call(request, timeout=30)
    assert reply.value == b"630"  # type: ignore[attr-defined]  # a message class made at run time
    assert json_format.MessageToDict(reply) == {"value": "NjMw"}  # grpcurl's output


async def test_health_check(counted: CountedCluster) -> None:
    """grpc.health.v1.Health/Check: SERVING for the node and each shoal service."""
    async with grpc.aio.insecure_channel(target(counted.cluster.nodes[2])) as channel:
        for service in ("", "pb.GroupCache", "shoal.v1.Cache", "shoal.v1.Peer"):
            reply = await health_check(channel, service)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


# --------------------------------------------------------------------------- smart client


async def test_smart_client_sends_each_key_to_its_owner(counted: CountedCluster) -> None:
    """shoal.Client learns the ring from one node and asks each key's owner directly:
    the owner loads it, and no node fetches it from a peer."""
    c, loads = counted.cluster, counted.loads
    async with shoal.Client(f"grpc://{target(c.nodes[2])}") as client:
        assert client.members == tuple(c.urls)
        assert client.transport == "grpc"
        peer_loads = [stats(node)["peer_loads"] for node in c.nodes]
        for index in range(3):
            keys = c.keys_owned_by(index, f"smart{index}", count=3)
            assert {client.owner(key) for key in keys} == {c.urls[index]}
            values = await asyncio.gather(*(client.get(GROUP, key) for key in keys))
            assert values == [loaded_value(key) for key in keys]
            for key in keys:
                assert loads.nodes(key) == [c.urls[index]]
        assert [stats(node)["peer_loads"] for node in c.nodes] == peer_loads
        with pytest.raises(shoal.NotFound):
            await client.get(GROUP, "missing-smart")
        with pytest.raises(shoal.GroupNotFound):
            await client.get("no-such-group", "k")


async def test_smart_client_batches_and_writes(counted: CountedCluster) -> None:
    """get_many asks each owner once; set and delete reach the owner and drop the hot
    copies other nodes hold, so every node reads the new value."""
    c = counted.cluster
    async with shoal.Client(f"http://127.0.0.1:{c.nodes[0].port}") as client:  # an API seed
        assert client.transport == "grpc"
        keys = [f"batch-{i}" for i in range(30)]
        found = await client.get_many(GROUP, [*keys, "missing-batch"])
        assert found == {k: loaded_value(k) for k in keys}
        (key,) = c.keys_owned_by(1, "written")
        assert await get(c.nodes[0], key) == (OK, loaded_value(key))  # a hot copy on node 0
        await client.set(GROUP, key, b"new value", ttl=60)
        for node in c.nodes:
            assert await get(node, key) == (OK, b"new value"), node.url
        await client.delete(GROUP, key)
        assert await client.get(GROUP, key) == loaded_value(key)  # loaded again


# --------------------------------------------------------------------------- a crash under load


async def test_sigkill_of_an_owner_under_load_fails_no_request(tmp_path: Path) -> None:
    """Clients keep calling two nodes over gRPC, and a smart client the whole cluster,
    while the third node is SIGKILLed: not one request fails. The survivors load the
    dead node's keys themselves, skipping it for the back-off period."""
    loads = LoadLog(tmp_path / "calls")
    with shoal_cluster(
        3,
        "--transport",
        "grpc",
        "--group",
        "data=helpers.loadlog:load",
        "--hot-admission",
        "never",
        env=loads.env(0.005),
    ) as c:
        survivors = c.nodes[:2]
        channels = [grpc.aio.insecure_channel(target(node)) for node in survivors]
        methods: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
            ch.unary_unary("/shoal.v1.Cache/Get") for ch in channels
        ]

        async def raw_request(n: int) -> tuple[str, str | None]:
            key = f"steady-{n}"
            request = pb.GetRequest(group=GROUP, key=key).SerializeToString()
            try:
                raw: bytes = await methods[n % 2](request, timeout=30)
            except grpc.aio.AioRpcError as exc:
                return key, f"{key} on {survivors[n % 2].url}: {exc.code()} {exc.details()}"
            if pb.GetResponse.FromString(raw).value != loaded_value(key):
                return key, f"{key}: wrong value"
            return key, None

        def victim_keys_after() -> list[str]:
            return [k for k in after_kill if c.owner(k) == 2]

        try:
            async with shoal.Client(f"grpc://{target(survivors[0])}") as client:

                async def smart_request(n: int) -> tuple[str, str | None]:
                    key = f"smart-{n}"
                    try:
                        value = await client.get(GROUP, key)
                    except shoal.ShoalError as exc:
                        return key, f"{key} by the smart client: {exc!r}"
                    if value != loaded_value(key):
                        return key, f"{key}: wrong value from the smart client"
                    return key, None

                run = await sigkill_under_load(
                    c,
                    2,
                    [raw_request] * 12 + [smart_request] * 4,
                    before=200,
                    after=300,
                    victim_after=60,
                )
        finally:
            for channel in channels:
                await channel.close()
        failures, before_kill, after_kill = run.failures, run.before, run.after
        assert failures == []
        assert any(c.owner(k) == 2 for k in before_kill)  # the victim did serve before
        smart_after = [k for k in victim_keys_after() if k.startswith("smart-")]
        assert smart_after, "the smart client asked for none of the dead node's keys"
        for key in victim_keys_after():
            nodes = loads.nodes(key)
            assert nodes, key
            assert set(nodes) <= {s.peer_url for s in survivors}, (key, nodes)
        for key in after_kill:
            if c.owner(key) != 2:
                assert loads.nodes(key) == [c.nodes[c.owner(key)].peer_url], key
        peer_errors = sum(stats(s)["peer_errors"] for s in survivors)
        assert peer_errors >= 1
        assert peer_errors < len(victim_keys_after()) / 2, peer_errors
        assert "loading locally" in "".join(s.stderr() for s in survivors)
