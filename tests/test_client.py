"""shoal.Client against nodes of this process: seeds, routing, the stand-in for a node
that failed, refreshes, and its errors (the process clusters are in tests/cluster/)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

import shoal
from helpers.processes import free_ports
from shoal import Client, ConfigError, Node, NodeConfig, NotFound, PeerUnavailable


async def _load(key: str) -> bytes:
    if key.startswith("missing"):
        raise NotFound(key)
    return f"v:{key}".encode()


@asynccontextmanager
async def cluster(transport: str, n: int = 3) -> AsyncIterator[list[Node]]:
    """``n`` started nodes with an HTTP API each, static peers, group ``g``."""
    ports = free_ports(n)
    urls = tuple(f"http://127.0.0.1:{port}" for port in ports)
    async with AsyncExitStack() as stack:
        nodes = []
        for port in ports:
            node = Node(NodeConfig(port=port, peers=urls, api_port=0, transport=transport))
            node.group("g", _load, hot_admission="never")
            nodes.append(await stack.enter_async_context(node))
        yield nodes


def api_seed(node: Node) -> str:
    address = node.api_address
    assert address is not None
    return "http://{}:{}".format(*address)


def grpc_seed(node: Node) -> str:
    address = node.peer_address
    assert address is not None
    return "grpc://{}:{}".format(*address)


@pytest.mark.parametrize("transport", ["http", "grpc"])
async def test_routes_keys_to_their_owner_and_stands_in_for_a_dead_one(transport: str) -> None:
    """Keys go to their owner; once a node is gone, its keys go to the owner on a
    ring of the others (the same node every time), which loads them."""
    async with cluster(transport) as nodes:
        urls: list[str] = []
        for node in nodes:
            assert node.self_url is not None
            urls.append(node.self_url)
        async with Client(api_seed(nodes[0])) as client:
            assert (client.members, client.transport) == (tuple(urls), transport)
            keys = [f"k{i}" for i in range(40)]
            for key in keys:
                assert await client.get("g", key) == f"v:{key}".encode()
            for node in nodes:
                stats = node.get_group("g").statistics()
                assert stats.peer_loads == 0  # nobody forwarded: each key went to its owner
                owned = sum(1 for key in keys if client.owner(key) == node.self_url)
                assert stats.local_loads == owned
            dead = nodes[2]
            await dead.aclose()
            lost = [key for key in (f"x{i}" for i in range(200)) if client.owner(key) == urls[2]]
            stand_in = shoal.Ring.build(urls[:2]).owner
            for key in lost[:10]:
                assert await client.get("g", key) == f"v:{key}".encode()
            for key in lost[:10]:
                node = nodes[urls.index(stand_in(key))]
                assert node.get_group("g").cached_bytes(key) == f"v:{key}".encode()


@pytest.mark.parametrize("transport", ["http", "grpc"])
async def test_delete_says_whether_the_owner_had_the_key(transport: str) -> None:
    """Client.delete returns a bool, as Group.delete does, over either transport."""
    async with cluster(transport) as nodes, Client(api_seed(nodes[0])) as client:
        assert await client.get("g", "held") == b"v:held"
        assert await client.delete("g", "held") is True
        assert await client.delete("g", "held") is False
        assert await client.delete("g", "never-loaded") is False


async def test_seeds_are_tried_in_turn() -> None:
    """A seed that does not answer is skipped; refresh fails only if none answers."""
    async with cluster("grpc", 2) as nodes:
        (dead_port,) = free_ports(1)
        async with Client([f"grpc://127.0.0.1:{dead_port}", grpc_seed(nodes[1])]) as client:
            assert len(client.members) == 2
            assert await client.get_many("g", ["a", "b", "missing"]) == {
                "a": b"v:a",
                "b": b"v:b",
            }
            with pytest.raises(NotFound):
                await client.get("g", "missing-one")
    client = Client(f"http://127.0.0.1:{dead_port}", timeout=2)
    with pytest.raises(PeerUnavailable, match="no node told"):
        await client.start()
    await client.aclose()


async def test_a_node_without_peer_port_is_refused() -> None:
    """A node that runs alone without a peer port has no cluster for a client."""
    async with Node(NodeConfig(api_port=0)) as node:
        node.group("g", _load)
        client = Client(api_seed(node))
        with pytest.raises(ConfigError, match="without a peer port"):
            await client.start()
        await client.aclose()


async def test_a_client_must_be_started() -> None:
    """Before start (and after aclose) calls raise Closed."""
    client = Client("grpc://127.0.0.1:1")
    with pytest.raises(shoal.Closed, match="not started"):
        await client.get("g", "k")
    await client.aclose()
    with pytest.raises(shoal.Closed):
        await client.start()


@pytest.mark.parametrize(
    "seeds",
    [[], ["ftp://h:1"], ["grpc://h"], ["http://h:1/api"], ["http://h:x"], [3]],
)
def test_bad_seeds(seeds: list[object]) -> None:
    """Seeds are http(s):// or grpc:// URLs of host:port and nothing else."""
    with pytest.raises(ConfigError):
        Client(seeds)  # type: ignore[arg-type]


def test_bad_options() -> None:
    """Timeouts, back-off and channel counts must be positive."""
    bad: list[dict[str, Any]] = [{"timeout": 0}, {"backoff": -1}, {"channels": 0}]
    for options in bad:
        with pytest.raises(ConfigError):
            Client("grpc://h:1", **options)
