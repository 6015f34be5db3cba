"""Node: lifecycle, groups, two nodes in one process, loaders closed on shutdown."""

from __future__ import annotations

import asyncio

import pytest

from shoal import Closed, ConfigError, GroupNotFound, Node, NodeConfig
from shoal.testing import CountingLoader, ManualClock


async def test_two_nodes_in_one_process_are_independent() -> None:
    """No process globals: same group name on two nodes, separate caches."""
    async with Node() as a, Node() as b:
        ga = a.group("scores", CountingLoader({"Tom": b"1"}))
        gb = b.group("scores", CountingLoader({"Tom": b"2"}))
        assert await ga.get("Tom") == b"1"
        assert await gb.get("Tom") == b"2"
        assert a.get_group("scores") is ga
        assert b.get_group("scores") is gb


async def test_group_registry() -> None:
    """Duplicate names and bad options are ConfigErrors; unknown names GroupNotFound."""
    async with Node() as node:
        node.group("a", None)
        with pytest.raises(ConfigError, match="already exists"):
            node.group("a", None)
        with pytest.raises(ConfigError):
            node.group("b", None, no_such_option=1)
        with pytest.raises(ConfigError):
            node.group("bad name", None)
        with pytest.raises(GroupNotFound):
            node.get_group("zzz")
        assert list(node.groups) == ["a"]
        assert set(node.statistics()) == {"a"}


async def test_close_releases_loads_closes_loaders_and_refuses_new_groups() -> None:
    """aclose cancels flights (waiters get Closed) and awaits each loader's aclose()."""

    class PooledLoader(CountingLoader):
        closed = False

        async def aclose(self) -> None:
            self.closed = True

    loader = PooledLoader({"k": b"v"}, gate=asyncio.Event())
    node = Node()
    async with node:
        g = node.group("g", loader)
        waiter = asyncio.create_task(g.get("k"))
        await loader.started.wait()
    with pytest.raises(Closed):
        await waiter
    assert loader.closed
    with pytest.raises(Closed):
        node.group("h", None)
    await node.aclose()  # idempotent


async def test_sweeper_reclaims_expired_bytes() -> None:
    """The node's background sweep removes expired entries nobody reads."""
    clock = ManualClock()
    async with Node(NodeConfig(sweep_interval=0.01), clock=clock) as node:
        g = node.group("g", None)
        await g.set("k", b"v", ttl=1)
        clock.advance(2)
        for _ in range(500):
            if g.statistics().main.items == 0:
                break
            await asyncio.sleep(0.01)
        s = g.statistics().main
        assert (s.items, s.bytes, s.expirations) == (0, 0, 1)


async def test_config_validation() -> None:
    """NodeConfig rejects nonsense at construction."""
    with pytest.raises(ConfigError):
        NodeConfig(api_port=70000)
    with pytest.raises(ConfigError):
        NodeConfig(loader_threads=0)
    with pytest.raises(ConfigError):
        NodeConfig(header_timeout=float("nan"))


@pytest.mark.parametrize("url", ["http://", "http://127.0.0.1:0", "http://u@127.0.0.1:1"])
async def test_an_unusable_static_peer_url_fails_the_start(url: str) -> None:
    """A configured peer URL no member could have is a ConfigError at start, not a
    member skipped at run time as one heard from the network would be."""
    config = NodeConfig(port=0, peers=(url,))
    with pytest.raises(ConfigError, match="peers: a member URL"):
        async with Node(config):
            pass
