"""Choosing a policy: by name in a store or a group (main and hot cache), sized by the store."""

from __future__ import annotations

import pytest

from shoal import GroupConfig
from shoal.config import POLICIES
from shoal.errors import ConfigError
from shoal.group import Group
from shoal.policy import (
    POLICY_NAMES,
    ARCPolicy,
    FIFOPolicy,
    LFUPolicy,
    LRUPolicy,
    TinyLFUPolicy,
    make_policy,
)
from shoal.store import Store
from shoal.testing import CountingLoader, ManualClock

CLASSES = {
    "lru": LRUPolicy,
    "lfu": LFUPolicy,
    "fifo": FIFOPolicy,
    "arc": ARCPolicy,
    "tinylfu": TinyLFUPolicy,
}


def test_config_and_factory_agree() -> None:
    """GroupConfig accepts exactly the names make_policy builds."""
    assert POLICIES == POLICY_NAMES == tuple(CLASSES)


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_make_policy_builds_each(name: str) -> None:
    """Each name gives a fresh, empty policy of its class."""
    policy = make_policy(name, capacity_entries=10)
    assert type(policy) is CLASSES[name]
    assert len(policy) == 0


def test_unknown_names_are_refused() -> None:
    """An unknown policy is a ConfigError in the factory, a store and a group config."""
    with pytest.raises(ConfigError, match="unknown eviction policy"):
        make_policy("mru")
    with pytest.raises(ConfigError):
        Store(capacity_entries=10, policy="mru")
    with pytest.raises(ConfigError):
        GroupConfig(name="g", policy="mru")


def test_store_gives_a_policy_object_its_bounds() -> None:
    """A policy passed as an object is told the store's bounds (ARC needs c)."""
    arc = ARCPolicy()
    Store(capacity_entries=50, policy=arc)
    assert arc.capacity == 50
    tiny = TinyLFUPolicy()
    Store(capacity_bytes=10_000, policy=tiny)
    assert tiny.window_maximum == 100
    used = LRUPolicy()
    used.put("a", b"1", 2)
    with pytest.raises(ConfigError):
        Store(capacity_entries=5, policy=used)


@pytest.mark.parametrize("name", POLICY_NAMES)
async def test_group_uses_the_policy_for_main_and_hot(name: str) -> None:
    """A group's main and hot caches run its policy; reads, writes, deletes, TTLs work."""
    clock = ManualClock()
    loader = CountingLoader({f"k{i}": b"v" * 10 for i in range(100)})
    group: Group[bytes] = Group(
        GroupConfig(name="g", policy=name, capacity_entries=40, capacity_bytes=2000),
        loader,
        clock=clock,
    )
    assert type(group._main._policy) is CLASSES[name]
    assert type(group._hot._policy) is CLASSES[name]
    for _ in range(3):
        for i in range(60):
            assert await group.get(f"k{i % 30 if i % 2 else i}") == b"v" * 10
    stats = group.statistics()
    assert stats.main.items <= 35  # the main cache's share of 40 entries
    assert stats.main.bytes <= 1750
    assert stats.hits > 0
    await group.set("k1", b"new", ttl=5)
    assert await group.get("k1") == b"new"
    clock.advance(6)
    assert await group.get("k1") == b"v" * 10  # expired: loaded again
    assert await group.delete("k1")
    assert group._main.peek("k1") is None
