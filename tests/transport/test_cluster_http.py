"""The cluster read path over real sockets: nodes in one process, each with its own
peer server on 127.0.0.1, reaching each other through the default HTTP transport."""

from __future__ import annotations

import asyncio
import gc

import pytest

from helpers.peer_nodes import (
    FakePeer,
    Received,
    Reply,
    answer,
    http_cluster,
    owned_by,
    serving,
    value,
)
from shoal import LoadedValueTooLarge, NotFound, RemoteLoadError
from shoal.api.metrics import render_metrics
from shoal.transport.http import HttpPeerClient
from shoal.wire import encode_get_response
from shoal.wire.batch import EXTENSIONS_HEADER, GET_MANY_ERRORS_EXTENSION, GET_MANY_EXTENSION

SHOAL = {EXTENSIONS_HEADER: f"{GET_MANY_EXTENSION}, {GET_MANY_ERRORS_EXTENSION}"}
PROTOBUF = {"Content-Type": "application/x-protobuf"}


async def test_default_transport_is_http() -> None:
    """A node with a peer port and no transport given talks HTTP to its peers."""
    async with http_cluster(2) as nodes:
        picker = nodes[0].node.peers
        assert picker is not None
        (client,) = picker.view.clients.values()
        assert isinstance(client, HttpPeerClient)
        assert client.url == nodes[1].url


async def test_get_many_across_the_cluster() -> None:
    """get_many asks each owner for its keys and loads every key once in the cluster;
    the second time, peers already known as shoal nodes get one batch each."""
    async with http_cluster(3, hot_admission="never") as nodes:
        keys = [f"k{i}" for i in range(30)] + ["missing:1"]
        found = await nodes[0].group.get_many(keys)
        assert found == {k: value(k) for k in keys if not k.startswith("missing:")}
        more = [f"m{i}" for i in range(30)]
        assert await nodes[0].group.get_many(more) == {k: value(k) for k in more}
        loads = sorted(k for s in nodes for k in s.loader.calls)
        assert loads == sorted(keys + more)
        picker = nodes[0].node.peers
        assert picker is not None
        for url, client in picker.view.clients.items():
            assert isinstance(client, HttpPeerClient)
            stats = client.statistics()
            asked = sum(1 for k in keys if picker.owner(k) == url)
            # Key by key the first time (peer not yet known), then one batch.
            assert stats.requests == asked + 1, url


async def test_concurrent_misses_on_a_non_owner_go_out_in_batches() -> None:
    """Many concurrent misses of keys owned elsewhere are fetched without a task each,
    gathered into batch gets per owner, and loaded once each in the cluster; the
    answers are the owners' (values, NotFound, load errors) key by key."""
    async with http_cluster(hot_admission="never") as nodes:
        warm = [owned_by(nodes, 1, "warm"), owned_by(nodes, 2, "warm")]
        for key in warm:  # each peer has answered once: it is known as a shoal node
            await nodes[0].group.get(key)
        keys = [f"k{i}" for i in range(300)]
        remote = [k for k in keys if nodes[0].node.peers.owner(k) != nodes[0].url]  # type: ignore[union-attr]
        missing = owned_by(nodes, 2, "missing:")
        failing = owned_by(nodes, 2, "fail:")
        outcomes = await asyncio.gather(
            *(nodes[0].group.get(k) for k in remote * 3),
            nodes[0].group.get(missing),
            nodes[0].group.get(failing),
            return_exceptions=True,
        )
        assert outcomes[: 3 * len(remote)] == [value(k) for k in remote * 3]
        assert isinstance(outcomes[-2], NotFound)
        assert isinstance(outcomes[-1], RemoteLoadError)
        assert nodes[0].loader.calls == []
        assert sorted(nodes[1].loader.calls + nodes[2].loader.calls) == sorted(
            [*remote, missing, failing, *warm]
        )
        picker = nodes[0].node.peers
        assert picker is not None
        batched = sum(
            c.statistics().batched
            for c in picker.view.clients.values()
            if isinstance(c, HttpPeerClient)
        )
        assert batched >= len(remote)
        assert nodes[0].group.statistics().peer_errors == 0


async def test_an_owner_that_stops_answering_costs_peer_timeout_then_loads_here() -> None:
    """Fetches the owner never answers end at ``peer_timeout``: the keys load on the
    asking node, the peer error is counted, the connection is dropped, and the owner
    is skipped (back-off) for the next miss instead of costing another timeout."""

    async def script(request: Received) -> Reply:
        if request.index == 1:  # tells the client it is a shoal peer
            key = request.target.rsplit("/", 1)[1]
            headers = {"Content-Type": "application/x-protobuf", **SHOAL}
            return Reply(answer(200, encode_get_response(value(key)), headers=headers))
        return Reply(b"", then="hang")

    async with FakePeer(script) as peer, serving(peer_timeout=0.3, hot_admission="never") as me:
        me.node.set_peers([me.url, peer.url])
        picker = me.node.peers
        assert picker is not None
        theirs = [f"k{i}" for i in range(100) if picker.owner(f"k{i}") == peer.url]
        assert await me.group.get(theirs[0]) == value(theirs[0])
        start = asyncio.get_running_loop().time()
        results = await asyncio.gather(*(me.group.get(k) for k in theirs[1:4]))
        assert results == [value(k) for k in theirs[1:4]]
        assert asyncio.get_running_loop().time() - start >= 0.29
        assert sorted(me.loader.calls) == sorted(theirs[1:4])
        assert me.group.statistics().peer_errors == 3
        assert await asyncio.wait_for(peer.closed_by_client.get(), 5) >= 1
        assert picker.backing_off() == [peer.url]
        assert await me.group.get(theirs[4]) == value(theirs[4])  # at once, here
        assert len(peer.requests) == 2


async def test_peer_client_counters_in_cluster_info_and_metrics() -> None:
    """``/v1/cluster`` shows, per member reached over HTTP, its client's counters, and
    ``/metrics`` the same as shoal_peer_client_* series; a node's own entry has none."""
    async with http_cluster(2, hot_admission="never") as nodes:
        await nodes[0].group.get(owned_by(nodes, 1))
        keys = [owned_by(nodes, 1, f"b{i}-") for i in range(5)]
        await asyncio.gather(*(nodes[0].group.get(k) for k in keys))
        members = {m["url"]: m for m in nodes[0].node.cluster_info()["members"]}
        assert "client" not in members[nodes[0].url]
        client = members[nodes[1].url]["client"]
        assert client["requests"] == 2  # the first GET, then one batch
        assert client["batched"] == 5
        assert client["connections_open"] >= 1
        stats = nodes[0].node.peer_statistics()
        text = render_metrics([nodes[0].group.statistics()], stats).decode()
        assert f'shoal_peer_client_batched_keys_total{{peer="{nodes[1].url}"}} 5' in text


async def test_fetches_leave_no_garbage_cycles() -> None:
    """A fetch's objects (its flight call, the group's and the client's halves, its
    deadline, its batch) are freed by reference counting when it ends, not left in
    cycles for the garbage collector, which at thousands of fetches a second costs
    more than the fetches."""
    async with http_cluster(2, hot_admission="never") as nodes:
        await nodes[0].group.get(owned_by(nodes, 1, "warm"))
        keys = [owned_by(nodes, 1, f"g{i}-") for i in range(50)]
        await asyncio.gather(*(nodes[0].group.get(k) for k in keys))  # loaded at the owner
        gc.collect()
        gc.disable()
        try:
            for _ in range(4):
                assert await asyncio.gather(*(nodes[0].group.get(k) for k in keys)) == [
                    value(k) for k in keys
                ]
            found = gc.collect()
        finally:
            gc.enable()
        assert nodes[0].group.statistics().peer_loads >= 250
        assert found < 50  # a cycle per fetch would be 200 at least


async def test_a_peer_value_over_max_value_bytes_is_refused() -> None:
    """An owner (a Go node, or a member with a larger bound) sends a value over this
    group's max_value_bytes: it is an error for that key, neither served nor kept, counted,
    and the peer, which answered, is not suspect."""

    async def script(request: Received) -> Reply:
        key = request.target.rsplit("/", 1)[1]
        big = value(key) * 20  # 2,000 bytes
        return Reply(answer(200, encode_get_response(big), headers=PROTOBUF))

    async with (
        FakePeer(script) as peer,
        serving(max_value_bytes=1000, hot_admission="always") as me,
    ):
        me.node.set_peers([me.url, peer.url])
        picker = me.node.peers
        assert picker is not None
        key = next(f"k{i}" for i in range(100) if picker.owner(f"k{i}") == peer.url)
        with pytest.raises(LoadedValueTooLarge, match="max_value_bytes=1000"):
            await me.group.get(key)
        assert me.group.cached_bytes(key) is None
        stats = me.group.statistics()
        assert (stats.oversized_values, stats.peer_errors) == (1, 0)
        assert not picker.suspect(peer.url)
        assert me.loader.calls == []
        assert b'shoal_oversized_values_total{group="scores"} 1\n' in render_metrics([stats])
