"""An in-process cluster on the memory transport: nodes that call each other directly,
a counting loader on each, one manual clock for every group's TTLs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from shoal import Group, Node, NodeConfig, NotFound
from shoal.ring import Ring
from shoal.testing import CountingLoader, ManualClock
from shoal.transport.memory import MemoryNetwork

DATA = {f"k{i}": f"v{i}".encode() for i in range(200)}
"""What every node's loader knows."""


@dataclass
class Cluster:
    network: MemoryNetwork
    urls: list[str]
    nodes: list[Node]
    groups: list[Group[Any]]
    loaders: list[CountingLoader]
    clock: ManualClock

    def owner_index(self, key: str) -> int:
        return self.urls.index(Ring.build(self.urls).owner(key))

    def key_owned_by(self, index: int, skip: int = 0) -> str:
        keys = [k for k in DATA if self.owner_index(k) == index]
        return keys[skip]

    @property
    def loads(self) -> int:
        return sum(loader.total for loader in self.loaders)

    def values(self, key: str) -> list[bytes | None]:
        """What each node has cached for ``key`` (main or hot), without loading."""
        found: list[bytes | None] = []
        for group in self.groups:
            try:
                found.append(group.cached_bytes(key))
            except NotFound:
                found.append(None)
        return found


@asynccontextmanager
async def cluster(
    n: int = 3,
    *,
    gate: asyncio.Event | None = None,
    configs: Callable[[str, tuple[str, ...]], NodeConfig] | None = None,
    **group_options: Any,
) -> AsyncIterator[Cluster]:
    """``n`` started nodes that all list each other, each with group ``scores``
    (``group_options``) loading DATA through its own CountingLoader (``gate``: every
    load waits for it)."""
    network = MemoryNetwork()
    clock = ManualClock(1_800_000_000.0)
    urls = [f"http://10.0.0.{i + 1}:8000" for i in range(n)]
    members = tuple(urls)
    make = configs or (lambda url, peers: NodeConfig(self_url=url, peers=peers))
    async with AsyncExitStack() as stack:
        nodes, groups, loaders = [], [], []
        for url in urls:
            node = await stack.enter_async_context(
                Node(make(url, members), transport=network.transport(), clock=clock)
            )
            network.register(url, node)
            loader = CountingLoader(dict(DATA), gate)
            groups.append(node.group("scores", loader, **group_options))
            nodes.append(node)
            loaders.append(loader)
        yield Cluster(network, urls, nodes, groups, loaders, clock)
