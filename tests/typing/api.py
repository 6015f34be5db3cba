"""User-style code that exists only for ``mypy --strict``: the public API type-checks as used."""

from __future__ import annotations

import asyncio

import shoal
from shoal.sync import SyncNode
from shoal.testing import ManualClock


async def load_score(key: str) -> bytes:
    if key == "nobody":
        raise shoal.NotFound(key)
    return b"630"


def load_profile(key: str) -> shoal.Value[dict[str, str]]:
    return shoal.Value({"name": key}, ttl=30)


async def embedded() -> None:
    async with shoal.Node(shoal.NodeConfig(api_port=0), clock=ManualClock()) as node:
        scores = node.group("scores", load_score, capacity_bytes=8 << 20, ttl=60)
        profiles = node.group("profiles", load_profile, codec="json")
        value: bytes = await scores.get("Tom")
        many = await scores.get_many(["Tom", "Jack"])
        await scores.set("Tom", b"700", ttl=5)
        deleted: bool = await scores.delete("Tom")
        stats: shoal.GroupStats = scores.statistics()
        print(value, many, deleted, stats.hits, await profiles.get("Ann"), node.api_address)

        @scores.cached(key=lambda n: f"n:{n}")
        async def double(n: int) -> bytes:
            return str(2 * n).encode()

        doubled: bytes = await double(21)
        print(doubled)


async def smart_client() -> None:
    async with shoal.Client(["grpc://127.0.0.1:8001", "http://127.0.0.1:9999"]) as client:
        value: bytes = await client.get("scores", "Tom")
        many: dict[str, bytes] = await client.get_many("scores", ["Tom", "Jack"])
        await client.set("scores", "Tom", b"700", ttl=60)
        await client.delete("scores", "Tom")
        owner: str = client.owner("Tom")
        members: tuple[str, ...] = client.members
        print(value, many, owner, members, client.transport)


async def discovered() -> None:
    etcd = shoal.EtcdConfig(endpoints=("http://127.0.0.1:2379",), cluster="scores", lease_ttl=3)
    gossip = shoal.GossipConfig.profile("local", port=7946, join=("10.0.0.1:7946",))
    bound: float = gossip.detection_bound(5)
    for config in (shoal.NodeConfig(port=8001, etcd=etcd), shoal.NodeConfig(port=0, gossip=gossip)):
        async with shoal.Node(config) as node:
            info = node.cluster_info()
            source: str = config.membership
            print(node.node_id, info["members"], source, bound)


def threaded() -> None:
    with SyncNode() as node:
        scores = node.group("scores", load_score)
        print(scores.get("Tom"), scores.statistics().gets)


if __name__ == "__main__":
    asyncio.run(embedded())
    threaded()
