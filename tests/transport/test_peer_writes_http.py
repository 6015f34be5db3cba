"""The write side of the HTTP peer protocol over real sockets: nodes in one process,
each with its own peer server on 127.0.0.1, written to with exact request bytes.

A peer's ``PUT``, ``DELETE``, ``_remove-keys/`` and ``_invalidate/`` change the
receiving node only; ``Shoal-Write: client`` runs that node's whole write path;
``_replica/`` carries a replicated group's messages; every answer names the
extensions; :class:`HttpPeerClient` asks a peer it has not heard from what it is
before it sends a shoal-only request, and leaves a Go peer alone.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from helpers.go_node import go_node
from helpers.peer_nodes import (
    GROUP,
    FakePeer,
    Received,
    Reply,
    Script,
    answer,
    cached,
    http_cluster,
    loads,
    owned_by,
    serving,
    value,
    warm,
)
from helpers.raw_http import Client, RawResponse, call
from shoal import PeerError
from shoal.hlc import hlc_from_seconds
from shoal.lww import DEFAULT_BUCKETS
from shoal.transport.http import WRITE_HEADER, HttpPeerClient
from shoal.wire import (
    DEFAULT_BASE_PATH,
    build_peer_path,
    build_remove_keys_path,
    encode_remove_keys,
    encode_set_request,
)
from shoal.wire._pb import shoal_pb2 as pb
from shoal.wire.batch import (
    EXTENSIONS_HEADER,
    GET_MANY_EXTENSION,
    INVALIDATE_EXTENSION,
    INVALIDATE_SEGMENT,
    REPLICA_EXTENSION,
    REPLICA_SEGMENT,
    build_get_many_path,
    build_group_path,
    encode_get_many_request,
    parse_extensions,
)

BASE = DEFAULT_BASE_PATH
CLIENT_WRITE = {WRITE_HEADER: "client"}
MIRROR = "mirror"
"""A replicated group."""
TOKENS = {GET_MANY_EXTENSION, INVALIDATE_EXTENSION, REPLICA_EXTENSION}


# ------------------------------------------------------------------------------ kit


def check_extensions(response: RawResponse) -> None:
    """The answer names every extension a shoal peer server speaks."""
    header = response.headers.get(EXTENSIONS_HEADER.lower())
    assert header is not None, (response.status, response.headers)
    assert parse_extensions(header) >= TOKENS, header


def removed(response: RawResponse) -> int:
    """The ``n`` of a ``{"removed": n}`` answer (checked to be exactly that)."""
    assert response.status == 200, response
    assert response.headers["content-type"] == "application/json"
    check_extensions(response)
    body = response.json()
    assert set(body) == {"removed"}, body
    count = body["removed"]
    assert isinstance(count, int)
    return count


async def put(
    port: int, key: str, data: bytes, *, client: bool = False, group: str = GROUP
) -> RawResponse:
    """A ``PUT`` of ``key`` as a peer (or, with ``client``, as a client) sends it."""
    body = encode_set_request(group, key, data)
    headers = {"Content-Type": "application/x-protobuf", **(CLIENT_WRITE if client else {})}
    response = await call(port, "PUT", build_peer_path(BASE, group, key), body, headers)
    check_extensions(response)
    return response


async def delete(port: int, key: str, *, client: bool = False) -> RawResponse:
    headers = CLIENT_WRITE if client else {}
    return await call(port, "DELETE", build_peer_path(BASE, GROUP, key), headers=headers)


async def remove_keys(port: int, keys: list[str]) -> RawResponse:
    body = encode_remove_keys(GROUP, keys)
    target = build_remove_keys_path(BASE, GROUP)
    return await call(port, "POST", target, body, {"Content-Type": "application/json"})


async def invalidate(port: int, group: str = GROUP) -> RawResponse:
    return await call(port, "POST", build_group_path(BASE, group, INVALIDATE_SEGMENT))


async def replica(port: int, group: str, body: bytes) -> RawResponse:
    target = build_group_path(BASE, group, REPLICA_SEGMENT)
    response = await call(port, "POST", target, body, {"Content-Type": "application/x-protobuf"})
    check_extensions(response)
    return response


# -------------------------------------------------------------------------- PUT


async def test_peer_put_stores_on_the_receiving_node_only() -> None:
    """A PUT without Shoal-Write (what a peer sends) changes the receiving node's cache
    and nothing else: the owner and the other hot copies keep the old value."""
    async with http_cluster(hot_admission="always") as nodes:
        key = owned_by(nodes, 1)
        await warm(nodes, key)
        response = await put(nodes[2].port, key, b"peer-put")
        assert (response.status, response.body) == (200, b"")
        assert cached(nodes, key) == [value(key), value(key), b"peer-put"]
        # Nothing went over the network to the others.
        assert [s.group.statistics().server_requests for s in nodes] == [0, 2, 0]


async def test_client_put_runs_the_write_path() -> None:
    """A PUT with ``Shoal-Write: client`` to a non-owner stores the value at the owner
    and drops every other copy (hot copies and the receiving node's own); every node
    then reads the new value from the owner, and nothing is loaded again."""
    async with http_cluster(hot_admission="always") as nodes:
        key = owned_by(nodes, 1)
        await warm(nodes, key)
        response = await put(nodes[2].port, key, b"client-put", client=True)
        assert (response.status, response.body) == (200, b"")
        assert cached(nodes, key) == [None, b"client-put", None]
        for served in nodes:
            assert await served.group.get(key) == b"client-put"
        assert loads(nodes) == 1


async def test_client_put_on_the_owner_drops_the_other_copies() -> None:
    """The owner taking a client's PUT keeps the value and tells the others to drop
    theirs."""
    async with http_cluster(hot_admission="always") as nodes:
        key = owned_by(nodes, 0)
        await warm(nodes, key)
        response = await put(nodes[0].port, key, b"owner-put", client=True)
        assert response.status == 200
        assert cached(nodes, key) == [b"owner-put", None, None]


async def test_put_errors_change_nothing() -> None:
    """A malformed SetRequest is 400 and an unknown group 404; nothing is stored."""
    async with http_cluster(2, hot_admission="always") as nodes:
        key = owned_by(nodes, 1)
        await warm(nodes, key)
        for client in (False, True):
            bad = await call(
                nodes[0].port,
                "PUT",
                build_peer_path(BASE, GROUP, key),
                b"\x0a\x09short",
                CLIENT_WRITE if client else {},
            )
            assert bad.status == 400, bad
            check_extensions(bad)
            unknown = await put(nodes[0].port, key, b"x", client=client, group="nope")
            assert (unknown.status, unknown.body) == (404, b"no such group: nope\n")
        assert cached(nodes, key) == [value(key)] * 2


# ------------------------------------------------------------------ DELETE, remove-keys


async def test_peer_delete_is_local_and_counts() -> None:
    """A DELETE without Shoal-Write drops the key on the receiving node only and says
    whether it had it."""
    async with http_cluster(hot_admission="always") as nodes:
        key = owned_by(nodes, 1)
        await warm(nodes, key)
        assert removed(await delete(nodes[0].port, key)) == 1
        assert cached(nodes, key) == [None, value(key), value(key)]
        assert removed(await delete(nodes[0].port, key)) == 0
        assert removed(await delete(nodes[1].port, key)) == 1  # the owner, alone
        assert cached(nodes, key) == [None, None, value(key)]


async def test_peer_remove_keys_is_local_and_counts() -> None:
    """POST _remove-keys/ drops the named keys on the receiving node only; the count
    is of the keys it had."""
    async with http_cluster(hot_admission="always") as nodes:
        mine, theirs = owned_by(nodes, 2), owned_by(nodes, 0)
        await warm(nodes, mine, theirs)
        response = await remove_keys(nodes[2].port, [mine, theirs, "never-seen", mine])
        assert removed(response) == 2
        assert cached(nodes, mine) == [value(mine), value(mine), None]
        assert cached(nodes, theirs) == [value(theirs), value(theirs), None]
        assert removed(await remove_keys(nodes[2].port, [mine, theirs])) == 0


async def test_client_delete_removes_everywhere() -> None:
    """A DELETE with ``Shoal-Write: client`` drops the key on every member (the count
    is the owner's), whichever node takes it."""
    async with http_cluster(hot_admission="always") as nodes:
        other, own = owned_by(nodes, 1), owned_by(nodes, 0)
        await warm(nodes, other, own)
        assert removed(await delete(nodes[0].port, other, client=True)) == 1
        assert cached(nodes, other) == [None, None, None]
        assert removed(await delete(nodes[0].port, own, client=True)) == 1
        assert cached(nodes, own) == [None, None, None]
        assert removed(await delete(nodes[2].port, own, client=True)) == 0
        # The next read loads afresh at the owner.
        assert await nodes[2].group.get(other) == value(other)
        assert nodes[1].loader.calls.count(other) == 2


# --------------------------------------------------------------------------- invalidate


async def test_peer_invalidate_empties_that_node_only() -> None:
    """POST _invalidate/ empties the receiving node's group (main and hot caches) and
    says how many keys it dropped; the other nodes keep theirs."""
    async with http_cluster(hot_admission="always") as nodes:
        keys = [owned_by(nodes, i, f"inv{i}-") for i in range(3)]
        await warm(nodes, *keys)
        assert removed(await invalidate(nodes[1].port)) == 3
        for key in keys:
            assert cached(nodes, key) == [value(key), None, value(key)]
        assert removed(await invalidate(nodes[1].port)) == 0
        unknown = await invalidate(nodes[1].port, "nope")
        assert (unknown.status, unknown.body) == (404, b"no such group: nope\n")
        check_extensions(unknown)


async def test_invalidate_group_empties_every_node() -> None:
    """Group.invalidate_group() on one node empties the group on all three, over
    _invalidate/, and returns how many keys that node had."""
    async with http_cluster(hot_admission="always") as nodes:
        keys = [owned_by(nodes, i, f"all{i}-") for i in range(3)]
        await warm(nodes, *keys)
        assert await nodes[0].group.invalidate_group() == 3
        for key in keys:
            assert cached(nodes, key) == [None, None, None]
        assert [s.group.live_entries() for s in nodes] == [0, 0, 0]
        for served in nodes:
            assert await served.group.get(keys[1]) == value(keys[1])
        assert nodes[1].loader.calls.count(keys[1]) == 2


# ------------------------------------------------------------------------------ replica


def _digest(buckets: int, group: str = MIRROR) -> bytes:
    """A digest of an empty state."""
    request = pb.ReplicaRequest(group=group, digest=pb.ReplicaDigest(buckets=buckets))
    return request.SerializeToString()


async def test_replica_endpoint_checks_its_input() -> None:
    """POST _replica/ answers 400 for garbage, for a message naming another group than
    the path, and for a partitioned group; 404 for an unknown group. A valid digest of
    a replicated group gets a ReplicaResponse, and a push is applied."""
    async with serving(hot_admission="always") as served:
        mirror = served.node.group(MIRROR, None, mode="replicated", anti_entropy_interval=3600)
        assert mirror.replica is not None
        buckets = mirror.replica.state.buckets
        await mirror.set_bytes("a", b"1")
        port = served.port

        garbage = await replica(port, MIRROR, b"\x0a\x05ab")  # a truncated field
        assert garbage.status == 400
        assert b"undecodable" in garbage.body
        other = await replica(port, MIRROR, _digest(buckets, GROUP))
        assert other.status == 400
        assert b"scores" in other.body
        partitioned = await replica(port, GROUP, _digest(buckets, GROUP))
        assert partitioned.status == 400
        assert b"not replicated" in partitioned.body
        unknown = await replica(port, "nope", _digest(buckets, "nope"))
        assert (unknown.status, unknown.body) == (404, b"no such group: nope\n")
        assert mirror.cached_bytes("a") == b"1"  # none of them changed anything

        ok = await replica(port, MIRROR, _digest(buckets))
        assert ok.status == 200
        assert ok.headers["content-type"] == "application/x-protobuf"
        reply = pb.ReplicaResponse.FromString(ok.body)
        assert reply.WhichOneof("kind") == "digest"
        assert not reply.digest.in_sync  # this node has "a"
        assert len(reply.digest.hashes) == buckets

        entry = pb.ReplicaEntry(
            key="b", hlc=hlc_from_seconds(time.time()), node="elsewhere", value=b"2"
        )
        push = pb.ReplicaRequest(group=MIRROR, push=pb.ReplicaPush(entries=[entry]))
        pushed = await replica(port, MIRROR, push.SerializeToString())
        assert pushed.status == 200
        reply = pb.ReplicaResponse.FromString(pushed.body)
        assert (reply.WhichOneof("kind"), reply.pushed.applied) == ("pushed", 1)
        assert mirror.cached_bytes("b") == b"2"


# --------------------------------------------------------------------------- extensions


async def test_every_answer_names_the_extensions() -> None:
    """Hits (the fast path), loads, misses, errors, writes, batch gets, invalidation
    and replica answers all carry Shoal-Extensions with every token."""
    async with serving(hot_admission="always") as served:
        served.node.group(MIRROR, None, mode="replicated", anti_entropy_interval=3600)
        port = served.port
        path = build_peer_path(BASE, GROUP, "x")
        json_type = {"Content-Type": "application/json"}
        async with Client(port) as conn:
            answers = [
                (200, await conn.request("GET", path)),  # a load
                (200, await conn.request("GET", path)),  # a hit, fast path
                (200, await conn.request("GET", path + "?q=1")),  # a hit, general path
                (404, await conn.request("GET", build_peer_path(BASE, GROUP, "missing:1"))),
                (404, await conn.request("GET", build_peer_path(BASE, "nope", "x"))),
                (404, await conn.request("GET", "/elsewhere/x")),
                (400, await conn.request("GET", BASE)),
                (405, await conn.request("PATCH", path)),
                (200, await conn.request("PUT", path, encode_set_request(GROUP, "x", b"v"))),
                (
                    200,
                    await conn.request(
                        "PUT", path, encode_set_request(GROUP, "x", b"w"), CLIENT_WRITE
                    ),
                ),
                (400, await conn.request("PUT", path, b"\xff")),
                (200, await conn.request("DELETE", path)),
                (200, await conn.request("DELETE", path, headers=CLIENT_WRITE)),
                (
                    200,
                    await conn.request(
                        "POST",
                        build_remove_keys_path(BASE, GROUP),
                        encode_remove_keys(GROUP, ["x", "y"]),
                        json_type,
                    ),
                ),
                (
                    400,
                    await conn.request(
                        "POST", build_remove_keys_path(BASE, GROUP), b"[", json_type
                    ),
                ),
                (
                    200,
                    await conn.request(
                        "POST",
                        build_get_many_path(BASE, GROUP),
                        encode_get_many_request(["x", "y"]),
                    ),
                ),
                (200, await conn.request("POST", build_group_path(BASE, GROUP, "_invalidate/"))),
                (
                    200,
                    await conn.request(
                        "POST",
                        build_group_path(BASE, MIRROR, "_replica/"),
                        _digest(DEFAULT_BUCKETS),
                    ),
                ),
                (
                    400,
                    await conn.request(
                        "POST", build_group_path(BASE, MIRROR, "_replica/"), b"\xff"
                    ),
                ),
            ]
        for status, response in answers:
            assert response.status == status, (status, response)
            check_extensions(response)


# ---------------------------------------------------------------- the client's probing


def forwarding(port: int) -> Script:
    """A FakePeer script that passes each request to the server on ``port`` and its
    answer back: a recording proxy in front of a real node."""

    async def script(request: Received) -> Reply:
        async with Client(port) as upstream:
            await upstream.send(request.head + request.body)
            got = await upstream.response()
        headers = {k: v for k, v in got.headers.items() if k != "content-length"}
        return Reply(answer(got.status, got.body, reason=got.reason, headers=headers))

    return script


async def test_invalidate_probes_a_peer_it_has_not_heard_from() -> None:
    """HttpPeerClient.invalidate on a fresh client asks ``GET {base}`` first, learns
    the extensions from the 400, then sends the POST; the next time it only posts."""
    async with (
        http_cluster(1, hot_admission="always") as (node,),
        FakePeer(forwarding(node.port)) as proxy,
    ):
        await node.group.get("a")
        await node.group.get("b")
        client = HttpPeerClient(proxy.url)
        try:
            assert await client.invalidate(GROUP) == 2
            assert [r.request_line for r in proxy.requests] == [
                f"GET {BASE} HTTP/1.1",
                f"POST {BASE}{GROUP}/_invalidate/ HTTP/1.1",
            ]
            assert node.group.live_entries() == 0
            await node.group.get("c")
            assert await client.invalidate(GROUP) == 1
            assert len(proxy.requests) == 3
            assert proxy.requests[2].request_line == f"POST {BASE}{GROUP}/_invalidate/ HTTP/1.1"
        finally:
            await client.aclose()


async def test_a_client_that_heard_from_the_peer_does_not_probe() -> None:
    """An answer to any earlier request names the extensions: no probe is needed."""
    async with http_cluster(1) as (node,), FakePeer(forwarding(node.port)) as proxy:
        client = HttpPeerClient(proxy.url)
        try:
            assert (await client.get(GROUP, "a")).value == value("a")
            assert await client.invalidate(GROUP) == 1
            assert [r.request_line.split(" ")[0] for r in proxy.requests] == ["GET", "POST"]
            assert proxy.requests[0].target == build_peer_path(BASE, GROUP, "a")
        finally:
            await client.aclose()


GO_BAD_REQUEST = answer(
    400,
    b"bad request\n",
    reason="Bad Request",
    headers={
        "Content-Type": "text/plain; charset=utf-8",
        "X-Content-Type-Options": "nosniff",
    },
)
"""What golang/groupcache answers to ``GET /_groupcache/`` (no Shoal-Extensions)."""


async def go_like(request: Received) -> Reply:
    """A Go server as far as the probe goes: 400 to everything, no extensions."""
    return Reply(GO_BAD_REQUEST)


async def test_invalidate_leaves_a_go_like_peer_alone() -> None:
    """A peer whose answer to the probe names no extensions gets no POST: invalidate
    returns None (and does not probe again), replica raises PeerError."""
    async with FakePeer(go_like) as fake:
        client = HttpPeerClient(fake.url)
        try:
            assert await client.invalidate(GROUP) is None
            assert [r.request_line for r in fake.requests] == [f"GET {BASE} HTTP/1.1"]
            assert await client.invalidate(GROUP) is None
            with pytest.raises(PeerError, match="does not serve replicated groups"):
                await client.replica(GROUP, _digest(DEFAULT_BUCKETS, GROUP))
            assert [r.request_line for r in fake.requests] == [f"GET {BASE} HTTP/1.1"]
        finally:
            await client.aclose()


async def test_invalidate_leaves_a_real_go_node_alone(go_node_binary: Path) -> None:
    """Against a real golang/groupcache node: the probe's 400 names no extensions, so
    invalidate returns None, and the Go node never sees a request for its group (its
    server_requests and loads stay 0: a POST would have loaded ``_invalidate/``)."""
    async with go_node(go_node_binary) as go:
        client = HttpPeerClient(go.url)
        try:
            assert await client.invalidate(GROUP) is None
            assert client.statistics().requests == 1  # the probe only
            assert await client.invalidate(GROUP) is None
            with pytest.raises(PeerError, match="does not serve replicated groups"):
                await client.replica(GROUP, _digest(DEFAULT_BUCKETS, GROUP))
            assert client.statistics().requests == 1
        finally:
            await client.aclose()
        stats = await go.stats()
        assert (stats["server_requests"], stats["loads"]) == (0, 0)


# -------------------------------------------------------------------- replicated groups


async def test_replicated_group_over_http() -> None:
    """A replicated group across 3 nodes talking HTTP: a set is on every node when it
    returns, a delete is gone everywhere, and invalidate_group empties every node."""
    async with http_cluster(3) as nodes:
        groups = [
            s.node.group(MIRROR, None, mode="replicated", anti_entropy_interval=3600) for s in nodes
        ]
        for served in nodes:
            picker = served.node.peers
            assert picker is not None
            assert all(isinstance(c, HttpPeerClient) for c in picker.view.clients.values())
        await groups[0].set_bytes("a", b"1")
        assert cached(nodes, "a", MIRROR) == [b"1"] * 3
        await groups[1].set_bytes("a", b"2")
        await groups[2].set_bytes("b", b"3")
        assert cached(nodes, "a", MIRROR) == [b"2"] * 3
        assert cached(nodes, "b", MIRROR) == [b"3"] * 3

        assert await groups[2].delete("a") is True
        assert cached(nodes, "a", MIRROR) == [None] * 3
        assert await groups[0].delete("a") is False

        for i in range(5):
            await groups[i % 3].set_bytes(f"c{i}", b"x")
        assert [g.live_entries() for g in groups] == [6, 6, 6]
        assert await groups[1].invalidate_group() == 6
        assert [g.live_entries() for g in groups] == [0, 0, 0]
        assert cached(nodes, "b", MIRROR) == [None] * 3
        # Later writes still replicate.
        await groups[0].set_bytes("after", b"y")
        assert cached(nodes, "after", MIRROR) == [b"y"] * 3
        for group in groups:
            assert group.replica is not None
            stats = group.replica.statistics()
            assert stats["push_failures"] == 0, stats


async def test_peer_writes_to_a_replicated_group_replicate() -> None:
    """A PUT to a replicated group's path (a Go peer's write, or a peer's) becomes a
    write of the receiving node, so it reaches every member; so do a DELETE and an
    _invalidate/ (this is serve_peer_set/serve_peer_remove/serve_peer_invalidate's contract)."""
    async with http_cluster(3) as nodes:
        for s in nodes:
            s.node.group(MIRROR, None, mode="replicated", anti_entropy_interval=3600)
        response = await put(nodes[1].port, "p", b"put", group=MIRROR)
        assert response.status == 200
        assert cached(nodes, "p", MIRROR) == [b"put"] * 3
        gone = await call(nodes[2].port, "DELETE", build_peer_path(BASE, MIRROR, "p"))
        assert removed(gone) == 1
        assert cached(nodes, "p", MIRROR) == [None] * 3
        await put(nodes[0].port, "q", b"q", group=MIRROR)
        assert removed(await invalidate(nodes[0].port, MIRROR)) == 1
        assert cached(nodes, "q", MIRROR) == [None] * 3


async def test_a_rejected_request_does_not_make_the_client_forget_the_peer() -> None:
    """A shoal peer that refuses one request at the HTTP level (a body over its
    max_body_bytes) is still a shoal peer: the next invalidate reaches it."""
    async with serving(config={"max_body_bytes": 1000}) as served:
        client = HttpPeerClient(served.url)
        try:
            await served.group.get("a")
            assert await client.invalidate(GROUP) == 1
            with pytest.raises(PeerError, match="413"):
                await client.set(GROUP, "big", b"x" * 2000)
            await served.group.get("a")
            assert await client.invalidate(GROUP) == 1
        finally:
            await client.aclose()
