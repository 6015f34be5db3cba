"""The gRPC transport over real sockets: nodes in one process, each with a gRPC server on
127.0.0.1, reaching each other through ``GrpcTransport``; the services' answers and
status codes byte by byte."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2

from helpers.grpc_calls import health_check, raw_call
from helpers.peer_nodes import grpc_cluster, owned_by, value
from helpers.processes import free_ports
from shoal import (
    GroupNotFound,
    InvalidTTL,
    KeyTooLarge,
    Node,
    NodeConfig,
    NotFound,
    PeerTimeout,
    PeerUnavailable,
    RemoteLoadError,
)
from shoal.errors import ConfigError
from shoal.transport.grpc import GrpcNodeClient, GrpcPeerClient, GrpcTransport, grpc_target
from shoal.wire._pb import geekcache_pb2 as geek
from shoal.wire._pb import shoal_pb2 as pb

OK = grpc.StatusCode.OK


async def test_the_config_picks_the_grpc_transport() -> None:
    """transport="grpc": peers get gRPC clients, and the cluster view says so."""
    async with grpc_cluster(2) as nodes:
        picker = nodes[0].node.peers
        assert picker is not None
        (client,) = picker.view.clients.values()
        assert isinstance(client, GrpcPeerClient)
        assert client.url == nodes[1].url
        assert nodes[0].node.cluster_info()["transport"] == "grpc"


async def test_fetches_from_a_peer_share_one_channel() -> None:
    """Every fetch from a peer goes over the same channel (one connection, not one per
    request)."""
    async with grpc_cluster(hot_admission="never") as nodes:
        key = owned_by(nodes, 1)
        for _ in range(3):
            assert await nodes[0].group.get(key) == value(key)
        picker = nodes[0].node.peers
        assert picker is not None
        client = picker.view.clients[nodes[1].url]
        assert isinstance(client, GrpcPeerClient)
        assert (client.requests, client.channels_open) == (3, 1)


async def test_get_many_is_one_call_per_owner() -> None:
    """get_many asks each owner once for all of its keys and loads every key once."""
    async with grpc_cluster(3, hot_admission="never") as nodes:
        keys = [f"k{i}" for i in range(30)] + ["missing:1"]
        found = await nodes[0].group.get_many(keys)
        assert found == {k: value(k) for k in keys if not k.startswith("missing:")}
        assert sorted(k for s in nodes for k in s.loader.calls) == sorted(keys)
        picker = nodes[0].node.peers
        assert picker is not None
        for client in picker.view.clients.values():
            assert isinstance(client, GrpcPeerClient)
            assert client.requests == 1


async def test_get_many_splits_big_batches() -> None:
    """More keys than max_batch_keys go in several calls; only asked keys come back."""
    async with grpc_cluster(1) as (node,):
        client = GrpcTransport(max_batch_keys=4).client(node.url)
        try:
            keys = [f"b{i}" for i in range(10)] + ["missing:x"]
            found = await client.get_many("scores", keys)
            assert {k: f.value for k, f in found.items()} == {k: value(k) for k in keys[:10]}
            assert client.requests == 3
        finally:
            await client.aclose()


async def test_peer_requests_are_never_forwarded() -> None:
    """A request on shoal.v1.Peer is a hop: the node loads a key its ring gives to
    another node itself. The same key asked on shoal.v1.Cache goes to its owner."""
    async with grpc_cluster(2, hot_admission="never") as nodes:
        key = owned_by(nodes, 0, "hop")
        request = pb.GetRequest(group="scores", key=key).SerializeToString()
        answer = await raw_call(nodes[1].port, "/shoal.v1.Peer/Get", request)
        assert answer.status is OK
        assert answer.body is not None
        assert pb.PeerValue.FromString(answer.body).value == value(key)
        assert (nodes[0].loader.calls, nodes[1].loader.calls) == ([], [key])
        assert nodes[0].group.statistics().server_requests == 0

        other = owned_by(nodes, 0, "forward")
        request = pb.GetRequest(group="scores", key=other).SerializeToString()
        answer = await raw_call(nodes[1].port, "/shoal.v1.Cache/Get", request)
        assert answer.status is OK
        assert nodes[0].loader.calls == [other]


# --------------------------------------------------------------------------- statuses


async def _error_loader(key: str) -> bytes:
    if key.startswith("missing:"):
        raise NotFound(key)
    if key.startswith("fail:"):
        raise RuntimeError("database down")
    if key.startswith("slow:"):
        await asyncio.sleep(30)
    return b"v:" + key.encode()


@asynccontextmanager
async def error_node() -> AsyncIterator[Node]:
    """A gRPC node with small limits: 64 KiB messages, 1000-byte values, 0.2 s loads."""
    node = Node(NodeConfig(port=0, transport="grpc", max_body_bytes=64 << 10))
    node.group("g", _error_loader, max_value_bytes=1000, load_timeout=0.2)
    async with node:
        yield node


def _get(group: str, key: str) -> bytes:
    return pb.GetRequest(group=group, key=key).SerializeToString()


def _set(key: str, size: int = 3, ttl: float | None = None) -> bytes:
    request = pb.SetRequest(group="g", key=key, value=b"x" * size)
    if ttl is not None:
        request.ttl = ttl
    return request.SerializeToString()


def _many(*keys: str) -> bytes:
    return pb.GetManyRequest(group="g", keys=keys).SerializeToString()


_S = grpc.StatusCode
_C, _P, _G = "/shoal.v1.Cache/", "/shoal.v1.Peer/", "/pb.GroupCache/"
_BAD_UTF8 = b"\x0a\x01g\x12\x02\xc3\x28"  # GetRequest{group: "g", key: <not UTF-8>}
ERRORS: list[tuple[str, str, bytes, grpc.StatusCode, str]] = [
    ("garbage", _C + "Get", b"\xff\xff\xff\xff", _S.INVALID_ARGUMENT, "bad_request"),
    ("bad-utf8", _C + "Get", _BAD_UTF8, _S.INVALID_ARGUMENT, "bad_request"),
    ("unknown-group", _C + "Get", _get("nope", "k"), _S.NOT_FOUND, "unknown_group"),
    ("empty-key", _C + "Get", _get("g", ""), _S.INVALID_ARGUMENT, "invalid_key"),
    ("long-key", _C + "Get", _get("g", "k" * 2000), _S.RESOURCE_EXHAUSTED, "key_too_large"),
    ("missing", _C + "Get", _get("g", "missing:1"), _S.NOT_FOUND, "not_found"),
    ("loader-fails", _C + "Get", _get("g", "fail:1"), _S.UNAVAILABLE, "load_failed"),
    ("load-timeout", _C + "Get", _get("g", "slow:1"), _S.DEADLINE_EXCEEDED, "load_timeout"),
    ("negative-ttl", _C + "Set", _set("k", ttl=-1), _S.INVALID_ARGUMENT, "invalid_ttl"),
    ("nan-ttl", _C + "Set", _set("k", ttl=math.nan), _S.INVALID_ARGUMENT, "invalid_ttl"),
    ("big-value", _C + "Set", _set("k", 2000), _S.RESOURCE_EXHAUSTED, "value_too_large"),
    ("huge-message", _C + "Set", _set("k", 100_000), _S.RESOURCE_EXHAUSTED, ""),
    (
        "too-many-keys",
        _C + "GetMany",
        _many(*(f"k{i}" for i in range(1001))),
        _S.RESOURCE_EXHAUSTED,
        "too_many_keys",
    ),
    ("one-bad-key", _C + "GetMany", _many("a", "b", ""), _S.INVALID_ARGUMENT, "invalid_key"),
    (
        "remove-bad-key",
        _C + "RemoveKeys",
        pb.RemoveKeysRequest(group="g", keys=["cached", ""]).SerializeToString(),
        _S.INVALID_ARGUMENT,
        "invalid_key",
    ),
    (
        "stats-unknown",
        _C + "Stats",
        pb.StatsRequest(group="x").SerializeToString(),
        _S.NOT_FOUND,
        "unknown_group",
    ),
    ("peer-garbage", _P + "Get", b"\x0a\xff", _S.INVALID_ARGUMENT, "bad_request"),
    ("peer-missing", _P + "Get", _get("g", "missing:2"), _S.NOT_FOUND, "not_found"),
    ("peer-fails", _P + "GetMany", _many("missing:3", "fail:2"), _S.UNAVAILABLE, "load_failed"),
    (
        "geek-unknown-group",
        _G + "Get",
        geek.Request(group="x", key="k").SerializeToString(),
        _S.NOT_FOUND,
        "unknown_group",
    ),
    ("unknown-method", _C + "Nope", b"", _S.UNIMPLEMENTED, ""),
]


@pytest.mark.parametrize(
    ("path", "request_bytes", "status", "code"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
async def test_errors_have_their_status_and_code(
    path: str, request_bytes: bytes, status: grpc.StatusCode, code: str
) -> None:
    """Each failure has its gRPC status and shoal-code; a refused request changes
    nothing in the cache, and the node keeps serving."""
    async with error_node() as node:
        group = node.get_group("g")
        await group.set("cached", b"c")
        before = group.statistics()
        address = node.peer_address
        assert address is not None
        answer = await raw_call(address[1], path, request_bytes)
        assert (answer.status, answer.code) == (status, code), answer.details
        after = group.statistics()
        assert after.main.items == before.main.items
        assert group.cached_bytes("cached") == b"c"
        ok = await raw_call(address[1], "/shoal.v1.Cache/Get", _get("g", "after"))
        assert ok.status is OK
        assert ok.body is not None
        assert pb.GetResponse.FromString(ok.body).value == b"v:after"


async def test_a_batch_with_a_bad_key_loads_nothing() -> None:
    """Every key of a GetMany is checked before the first one is loaded."""
    calls: list[str] = []

    async def loader(key: str) -> bytes:
        calls.append(key)
        return b"v"

    node = Node(NodeConfig(port=0, transport="grpc"))
    node.group("g", loader)
    async with node:
        address = node.peer_address
        assert address is not None
        request = pb.GetManyRequest(group="g", keys=["a", "b", "k" * 5000]).SerializeToString()
        answer = await raw_call(address[1], "/shoal.v1.Cache/GetMany", request)
        assert answer.status is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert calls == []


# --------------------------------------------------------------------------- services


async def test_cache_service_round_trip() -> None:
    """Every shoal.v1.Cache call through GrpcNodeClient, and the errors it raises."""
    async with error_node() as node:
        address = node.peer_address
        assert address is not None
        client = GrpcNodeClient(f"grpc://127.0.0.1:{address[1]}")
        try:
            assert await client.get("g", "Tom") == b"v:Tom"
            await client.set("g", "Tom", b"700", ttl=60)
            assert await client.get("g", "Tom") == b"700"
            assert await client.get_many("g", ["Tom", "Jack", "missing:x"]) == {
                "Tom": b"700",
                "Jack": b"v:Jack",
            }
            assert await client.delete("g", "Tom") is True
            assert await client.delete("g", "Tom") is False
            assert await client.remove_keys("g", ["Jack", "Nobody"]) == 1
            stats = await client.stats()
            assert set(stats) == {"g"}
            assert stats["g"] == node.get_group("g").statistics().as_dict()
            assert await client.stats("g") == stats
            cluster = await client.cluster("Tom")
            info = node.cluster_info("Tom")
            assert cluster == {
                "self": info["self"],
                "peer_address": info["peer_address"],
                "base_path": info["base_path"],
                "transport": "grpc",
                "ring": info["ring"],
                "members": [
                    {k: m[k] for k in ("url", "self", "share", "backing_off")}
                    for m in info["members"]
                ],
                "owner": info["self"],
            }
            with pytest.raises(NotFound):
                await client.get("g", "missing:1")
            with pytest.raises(GroupNotFound):
                await client.get("nope", "k")
            with pytest.raises(KeyTooLarge):
                await client.get("g", "k" * 2000)
            with pytest.raises(InvalidTTL):
                await client.set("g", "k", b"v", ttl=0)
            with pytest.raises(RemoteLoadError, match="database down"):
                await client.get("g", "fail:1")
        finally:
            await client.aclose()


async def test_geek_cache_service() -> None:
    """pb.GroupCache: Get runs the read path, Delete says whether the key was cached."""
    async with error_node() as node:
        address = node.peer_address
        assert address is not None
        request = geek.Request(group="g", key="Tom").SerializeToString()
        answer = await raw_call(address[1], "/pb.GroupCache/Get", request)
        assert answer.body is not None
        assert geek.ResponseForGet.FromString(answer.body).value == b"v:Tom"
        for expected in (True, False):
            answer = await raw_call(address[1], "/pb.GroupCache/Delete", request)
            assert answer.body is not None
            assert geek.ResponseForDelete.FromString(answer.body).value is expected
        missing = geek.Request(group="g", key="missing:1").SerializeToString()
        answer = await raw_call(address[1], "/pb.GroupCache/Get", missing)
        assert (answer.status, answer.code) == (grpc.StatusCode.NOT_FOUND, "not_found")


async def test_health_reports_every_service() -> None:
    """grpc.health.v1: SERVING for the server and each service, NOT_FOUND for others."""
    async with error_node() as node:
        address = node.peer_address
        assert address is not None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{address[1]}") as channel:
            for service in ("", "shoal.v1.Cache", "shoal.v1.Peer", "pb.GroupCache"):
                reply = await health_check(channel, service)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health_check(channel, "nope")
            assert caught.value.code() is grpc.StatusCode.NOT_FOUND


# --------------------------------------------------------------------------- clients


async def test_client_failures_are_peer_errors() -> None:
    """Nobody listening: PeerUnavailable at once. No answer in time: PeerTimeout."""
    async with error_node() as node:
        address = node.peer_address
        assert address is not None
        slow = GrpcNodeClient(f"grpc://127.0.0.1:{address[1]}", timeout=0.1)
        try:
            with pytest.raises(PeerTimeout):
                await slow.get("g", "slow:2")
        finally:
            await slow.aclose()
        port = address[1]
    dead = GrpcPeerClient(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(PeerUnavailable):
            await dead.get("g", "k")
    finally:
        await dead.aclose()
    with pytest.raises(PeerUnavailable, match="closed"):
        await dead.get("g", "k")


async def test_a_port_in_use_is_an_os_error() -> None:
    """A second node on the same port fails to start with OSError (no port sharing)."""
    async with error_node() as node:
        address = node.peer_address
        assert address is not None
        second = Node(NodeConfig(port=address[1], transport="grpc"))
        with pytest.raises(OSError, match="cannot listen"):
            async with second:
                pass


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://127.0.0.1:8001", ("127.0.0.1:8001", False)),
        ("grpc://node-1:9000/", ("node-1:9000", False)),
        ("https://cache.example", ("cache.example:443", True)),
        ("http://[::1]:8001", ("[::1]:8001", False)),
    ],
)
def test_grpc_target(url: str, target: tuple[str, bool]) -> None:
    """Node URLs map to gRPC targets; https means TLS."""
    assert grpc_target(url) == target


@pytest.mark.parametrize(
    "url", ["grpc://host", "ftp://h:1", "http://h:1/path", "http://h:x", "http://u@h:1"]
)
def test_bad_grpc_targets(url: str) -> None:
    """Anything but scheme://host[:port] is a ConfigError."""
    with pytest.raises(ConfigError):
        grpc_target(url)


def test_transport_options_are_checked() -> None:
    """Out-of-range options are refused when the transport is made."""
    for options in ({"timeout": 0}, {"channels": 0}, {"max_batch_keys": -1}):
        with pytest.raises(ConfigError):
            GrpcTransport(**options)  # type: ignore[arg-type]


async def test_several_channels_take_turns() -> None:
    """channels=N opens N channels, one per call until all are open, then reuses them."""
    async with grpc_cluster(1) as (node,):
        client = GrpcTransport(channels=3).client(node.url)
        try:
            for i in range(7):
                assert (await client.get("scores", f"c{i}")).value == value(f"c{i}")
            assert (client.requests, client.channels_open) == (7, 3)
        finally:
            await client.aclose()


# --------------------------------------------------------------------------- the extra


_WITHOUT_GRPC = "import sys\nsys.modules['grpc'] = None\n"


def test_shoal_works_without_grpcio() -> None:
    """Without grpcio, shoal imports and runs over HTTP; asking for gRPC raises
    MissingExtra naming the extra, and `shoal serve --transport grpc` says so."""
    code = _WITHOUT_GRPC + (
        "import asyncio, shoal\n"
        "async def main():\n"
        "    async with shoal.Node(shoal.NodeConfig(port=0)) as n:\n"
        "        n.group('g', None)\n"
        "    try:\n"
        "        async with shoal.Node(shoal.NodeConfig(port=0, transport='grpc')):\n"
        "            pass\n"
        "    except shoal.MissingExtra as exc:\n"
        "        assert exc.extra == 'grpc' and exc.module == 'grpcio', exc\n"
        "        print(exc)\n"
        "    else:\n"
        "        raise AssertionError('no MissingExtra')\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "pip install 'shoal[grpc]'" in done.stdout

    cli = _WITHOUT_GRPC + (
        "from shoal.cli.main import main\n"
        "sys.exit(main(['serve', '--transport', 'grpc', '--port', '0', '--api-port', '0',"
        " '--group', 'g']))\n"
    )
    done = subprocess.run([sys.executable, "-c", cli], capture_output=True, text=True, check=False)
    assert done.returncode == 2, done.stderr
    assert "shoal serve: error: 'grpcio' is not installed" in done.stderr
    assert "pip install 'shoal[grpc]'" in done.stderr


async def test_a_key_whose_owner_cannot_be_reached_is_unavailable_not_not_found() -> None:
    """A group without a loader, its key's owner down: the client service answers
    UNAVAILABLE with ``peer_unavailable`` (the key may exist there), not NOT_FOUND,
    the second time at once (the owner is suspect)."""
    port, dead = free_ports(2)
    me, gone = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{dead}"
    node = Node(NodeConfig(port=port, peers=(me, gone), transport="grpc", peer_backoff=30.0))
    node.group("plain")
    async with node:
        picker = node.peers
        assert picker is not None
        key = next(f"k{i}" for i in range(100) if picker.owner(f"k{i}") == gone)
        for _ in range(2):
            answer = await raw_call(port, _C + "Get", _get("plain", key))
            assert (answer.status, answer.code) == (
                grpc.StatusCode.UNAVAILABLE,
                "peer_unavailable",
            ), answer.details
        assert node.get_group("plain").statistics().peer_errors == 1
