"""Replicated groups keep their fills while anti-entropy runs: real nodes in one process,
each with its own peer server on 127.0.0.1.

An anti-entropy round between members in sync changes nothing, so it must not fence
the loads in flight: every value loaded is stored on every member afterwards. A real
group invalidate during a fill still fences it (``test_writes_memory`` checks that).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from helpers.peer_nodes import Served, cached, http_cluster
from shoal import Group

MIRROR = "mirror"
LOAD_SECONDS = 0.2


async def slow_load(key: str) -> bytes:
    await asyncio.sleep(LOAD_SECONDS)
    return f"loaded {key}".encode()


async def settled(nodes: list[Served], keys: list[str], within: float = 3.0) -> list[str]:
    """The keys some member still lacks once every push has had ``within`` seconds to land."""
    deadline = time.monotonic() + within
    while True:
        missing = [k for k in keys if None in cached(nodes, k, MIRROR)]
        if not missing or time.monotonic() > deadline:
            return missing
        await asyncio.sleep(0.05)


async def test_fills_survive_frequent_anti_entropy() -> None:
    """40 concurrent 200 ms fills on each of 3 members, with anti-entropy every
    0.05 s: every caller gets its value and every member stores every key."""
    async with http_cluster(3) as nodes:
        groups: list[Group[Any]] = [
            s.node.group(MIRROR, slow_load, mode="replicated", anti_entropy_interval=0.05)
            for s in nodes
        ]
        keys = [f"fill{i}" for i in range(40)]
        for round_ in range(2):
            batch = [f"{k}-{round_}" for k in keys]
            got = await asyncio.gather(*(g.get(k) for g in groups for k in batch))
            assert got == [f"loaded {k}".encode() for _ in groups for k in batch]
            assert await settled(nodes, batch) == []
        rounds = [g.replica.statistics()["sync_rounds"] for g in groups if g.replica]
        assert sum(rounds) >= 6, rounds  # anti-entropy really ran during the fills


async def test_an_invalidate_during_a_fill_still_fences_it() -> None:
    """A group invalidate made on another member while a fill runs wins: the caller
    gets the loaded value, and no member stores it."""
    async with http_cluster(2) as nodes:
        groups: list[Group[Any]] = [
            s.node.group(MIRROR, slow_load, mode="replicated", anti_entropy_interval=0.05)
            for s in nodes
        ]
        reading = asyncio.ensure_future(groups[0].get("late"))
        await asyncio.sleep(LOAD_SECONDS / 4)
        await groups[1].invalidate_group()
        assert await reading == b"loaded late"
        await asyncio.sleep(0.3)  # some anti-entropy rounds
        assert cached(nodes, "late", MIRROR) == [None, None]
