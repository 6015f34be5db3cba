"""Atomic operations at the key's owner (add, incr/decr, touch, ttl, get_or_set, the
batches) on partitioned and replicated groups of three nodes on real sockets, over
the HTTP and gRPC peer protocols, from Group, SyncGroup and shoal.Client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest

from helpers.processes import free_ports
from shoal import BadRequest, Client, GroupNotFound, InvalidTTL, Node, NodeConfig, NotFound

MODES = ["partitioned", "replicated"]
TRANSPORTS = ["http", "grpc"]


@asynccontextmanager
async def cluster(transport: str, mode: str, n: int = 3) -> AsyncIterator[list[Node]]:
    """``n`` started nodes with an HTTP API each and a loaderless group ``c``."""
    ports = free_ports(n)
    urls = [f"http://127.0.0.1:{port}" for port in ports]  # a list: any sequence will do
    async with AsyncExitStack() as stack:
        nodes = []
        for port in ports:
            node = Node(NodeConfig(port=port, peers=urls, api_port=0, transport=transport))
            node.group("c", mode=mode)
            nodes.append(await stack.enter_async_context(node))
        yield nodes


def api_seed(node: Node) -> str:
    address = node.api_address
    assert address is not None
    return "http://{}:{}".format(*address)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_concurrent_incr_from_every_node_loses_nothing(transport: str, mode: str) -> None:
    """3 nodes x 8 tasks x 100 increments of one key end exactly at 2400 (x 25 over
    gRPC, whose exchanges cost more: 600)."""
    rounds = 100 if transport == "http" else 25
    total = 24 * rounds
    async with cluster(transport, mode) as nodes:
        groups = [node.get_group("c") for node in nodes]
        assert await groups[0].add("n", b"0") is True

        async def bump(i: int) -> None:
            for _ in range(rounds):
                await groups[i % 3].incr("n")

        await asyncio.gather(*(bump(i) for i in range(24)))
        assert await groups[1].incr("n", 0) == total
        for group in groups:  # every member reads the total (a replicated one once pushed)
            for _ in range(50):
                if await group.get("n") == str(total).encode():
                    break
                await asyncio.sleep(0.02)
            assert await group.get("n") == str(total).encode()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_each_operation_on_each_group_kind(transport: str, mode: str) -> None:
    async with cluster(transport, mode) as nodes:
        a, b, _ = (node.get_group("c") for node in nodes)
        # add races: one winner, whatever node each add comes from.
        outcomes = await asyncio.gather(
            *(g.add("once", b"v%d" % i) for i, g in enumerate([a, b] * 5))
        )
        assert outcomes.count(True) == 1
        winner = b"v%d" % outcomes.index(True)
        assert await a.get_or_set("once", b"other") == winner
        assert await b.get_or_set("fresh", lambda: b"made") == b"made"
        # incr keeps the TTL; decr; touch and ttl.
        assert await a.add("t", b"41", ttl=30) is True
        assert await b.incr("t") == 42
        assert await a.decr("t", 5) == 37
        left = await b.ttl("t")
        assert left is not None
        assert 25 < left <= 30
        assert await a.touch("t", None) is True
        assert await b.ttl("t") is None
        assert await a.touch("t", 100) is True
        left = await a.ttl("t")
        assert left is not None
        assert 95 < left <= 100
        assert await a.touch("absent", 5) is False
        with pytest.raises(NotFound):
            await b.ttl("absent")
        with pytest.raises(NotFound):
            await a.incr("absent")
        with pytest.raises(BadRequest, match="not a 64-bit decimal integer"):
            await b.incr("once")
        with pytest.raises(BadRequest):
            await a.incr("t", 2**63)
        with pytest.raises(BadRequest):
            await a.incr("t", 1.5)  # type: ignore[arg-type]
        await a.set("big", str(2**63 - 1).encode())
        with pytest.raises(BadRequest, match="64-bit signed range"):
            await b.incr("big")
        with pytest.raises(InvalidTTL):
            await a.touch("t", -1)
        # batches
        many = {f"m{i}": b"%d" % i for i in range(30)}
        await b.set_many(many, ttl=60)
        big = {f"big{i}": b"x" for i in range(2500)}  # over 1,000 per owner: chunked
        await a.set_many(big)
        assert len(await b.get_many(big)) == 2500
        assert await a.get_many([*list(many), "nope"]) == many
        assert await a.delete_many([*list(many)[:10], "nope"]) == 10
        assert await b.get_many(many) == dict(list(many.items())[10:])
        assert await a.delete("once") is True
        assert await a.delete("once") is False


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_client_operations(transport: str, mode: str) -> None:
    async with cluster(transport, mode) as nodes, Client(api_seed(nodes[0])) as client:
        assert await client.add("c", "k", b"1", ttl=30) is True
        assert await client.add("c", "k", b"2") is False
        assert await asyncio.gather(*(client.incr("c", "k") for _ in range(50)))
        assert await client.incr("c", "k", 0) == 51
        assert await client.decr("c", "k", 51) == 0
        left = await client.ttl("c", "k")
        assert left is not None
        assert 25 < left <= 30
        assert await client.touch("c", "k") is True
        assert await client.ttl("c", "k") is None
        assert await client.touch("c", "gone") is False
        with pytest.raises(NotFound):
            await client.incr("c", "gone")
        with pytest.raises(NotFound):
            await client.ttl("c", "gone")
        with pytest.raises(BadRequest):
            await client.incr("c", "k", 2**64)
        assert await client.get_or_set("c", "gs", b"d") == b"d"
        assert await client.get_or_set("c", "gs", b"e") == b"d"
        many = {f"m{i}": b"x%d" % i for i in range(40)}
        await client.set_many("c", many)
        assert await client.get_many("c", many) == many
        assert await nodes[2].get_group("c").get_many(many) == many
        assert await client.delete_many("c", list(many)) == 40
        assert await client.get_many("c", many) == {}
        with pytest.raises(GroupNotFound):
            await client.incr("nosuch", "k")
        with pytest.raises(GroupNotFound):
            await client.get("nosuch", "k")
        with pytest.raises(GroupNotFound):
            await client.set("nosuch", "k", b"v")
        with pytest.raises(GroupNotFound):
            await client.delete("nosuch", "k")


async def test_add_and_incr_racing_a_load_are_not_overwritten() -> None:
    """Fencing: a load in flight when an add (or incr, or set) lands is not cached."""
    gate = asyncio.Event()
    started = asyncio.Event()

    async def slow(key: str) -> bytes:
        started.set()
        await gate.wait()
        return b"stale"

    async with Node(NodeConfig()) as node:
        group = node.group("l", slow)
        load = asyncio.ensure_future(group.get("k"))
        await started.wait()
        assert await group.add("k", b"5") is True
        assert await group.incr("k") == 6
        gate.set()
        assert await load == b"stale"  # its waiters get it
        assert await group.get("k") == b"6"  # but it did not overwrite the write


def test_sync_group_operations() -> None:
    from shoal.sync import SyncNode

    with SyncNode(NodeConfig()) as node:
        group = node.group("s", mode="partitioned")
        assert group.add("k", b"1") is True
        assert group.add("k", b"1") is False
        assert group.incr("k", 9) == 10
        assert group.decr("k") == 9
        assert group.touch("k", 60) is True
        left = group.ttl("k")
        assert left is not None
        assert 55 < left <= 60
        calls: list[str] = []

        def make() -> bytes:
            calls.append("called")
            return b"x"

        assert group.get_or_set("k", make) == b"9"
        assert group.get_or_set("new", make) == b"x"
        assert calls == ["called"]
        group.set_many({"a": b"1", "b": b"2"})
        assert group.get_many(["a", "b"]) == {"a": b"1", "b": b"2"}
        assert group.delete_many(["a", "b", "c"]) == 2
        with pytest.raises(NotFound):
            group.incr("c")


async def test_malformed_operations_get_a_clear_400() -> None:
    """The peer port refuses undecodable, oversized and unknown operations with a 400."""
    from helpers.processes import http_request
    from shoal.wire.ops import OP_INCR, OP_SET, OpItem, OpRequestBody, encode_op_request

    async with Node(NodeConfig(port=0)) as node:
        node.group("c")
        address = node.peer_address
        assert address is not None
        url = "http://{}:{}/_groupcache/c/_op/".format(*address)

        async def post(body: bytes) -> tuple[int, bytes]:
            return await asyncio.to_thread(http_request, "POST", url, body)

        huge = tuple(OpItem(f"k{i}", b"v") for i in range(1001))
        two = (OpItem("a"), OpItem("b"))
        cases = {
            b"\xff\xff\xff": b"malformed OpRequest",
            encode_op_request(OpRequestBody("c", OP_SET, huge)): b"over the limit of 1000",
            encode_op_request(OpRequestBody("c", OP_INCR, two)): b"takes one key",
            encode_op_request(OpRequestBody("c", 99, (OpItem("a"),))): b"unknown kind",
            encode_op_request(OpRequestBody("c", OP_INCR, ())): b"no key",
        }
        for body, message in cases.items():
            status, answer = await post(body)
            assert status == 400, answer
            assert message in answer


@pytest.mark.parametrize("op", ["add", "incr", "set"])
async def test_a_write_at_a_remote_owner_fences_its_load_in_flight(op: str) -> None:
    """A load running at the owner (asked for by another member) when an add, incr
    or set arrives from a third member does not overwrite the write when it ends."""
    gate = asyncio.Event()
    started = asyncio.Event()

    async def slow(key: str) -> bytes:
        started.set()
        await gate.wait()
        return b"100"

    ports = free_ports(3)
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    async with AsyncExitStack() as stack:
        nodes = []
        for port in ports:
            node = Node(NodeConfig(port=port, peers=urls, api_port=0))
            node.group("l", slow, hot_admission="never")
            nodes.append(await stack.enter_async_context(node))
        picker = nodes[0].get_group("l").peers
        assert picker is not None
        key = next(f"k{i}" for i in range(1000) if picker.owner(f"k{i}") == urls[1])
        asker, writer, owner = (n.get_group("l") for n in (nodes[0], nodes[2], nodes[1]))
        load = asyncio.ensure_future(asker.get(key))
        await started.wait()
        if op == "add":
            assert await writer.add(key, b"5") is True
            expected = b"5"
        elif op == "incr":
            await writer.set(key, b"5")
            assert await writer.incr(key) == 6
            expected = b"6"
        else:
            await writer.set(key, b"7")
            expected = b"7"
        gate.set()
        assert await load == b"100"  # the asker gets the load's own result
        assert owner.cached_bytes(key) == expected
        assert await asker.get(key) == expected
