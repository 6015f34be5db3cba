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


def threaded() -> None:
    with SyncNode() as node:
        scores = node.group("scores", load_score)
        print(scores.get("Tom"), scores.statistics().gets)


if __name__ == "__main__":
    asyncio.run(embedded())
    threaded()
