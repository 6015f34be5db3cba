"""LFU policy: the contract plus frequency order, LRU among equals, and dynamic aging."""

from __future__ import annotations

import random

from helpers.policy_contract import PolicyContract, machine_tests
from shoal.policy import LFUPolicy, LRUPolicy, Policy
from shoal.store import Store


def replay(policy: Policy, capacity: int, keys: list[str]) -> int:
    """Run keys through a policy as a store would; return the hits."""
    hits = 0
    for key in keys:
        if policy.lookup(key) is not None:
            policy.touch(key)
            hits += 1
        else:
            policy.put(key, b"v", 1)
            while len(policy) > capacity:
                policy.evict()
    return hits


class TestLFU(PolicyContract):
    make = LFUPolicy

    def test_evicts_least_frequent_then_least_recent(self) -> None:
        """The smallest count goes first; among equal counts, the least recently used."""
        p = LFUPolicy()
        for k in "abcd":
            p.put(k, b"v", 2)
        p.touch("a")
        p.touch("a")
        p.touch("c")
        p.touch("b")
        # counts: a 3, b 2, c 2, d 1; among b and c, c was touched before b.
        assert [p.evict()[0] for _ in range(4)] == ["d", "c", "b", "a"]

    def test_replace_counts_as_an_access(self) -> None:
        """Writing a held key raises its count like a read."""
        p = LFUPolicy()
        p.put("a", b"1", 2)
        p.put("b", b"1", 2)
        p.put("a", b"2", 2)
        assert p.count("a") == 2
        assert p.count("b") == 1
        assert p.evict() == ("b", b"1")

    def test_new_keys_start_at_the_age(self) -> None:
        """The age is the last victim's count; a new key starts one above it."""
        p = LFUPolicy()
        p.put("a", b"v", 2)
        for _ in range(4):
            p.touch("a")
        assert p.evict()[0] == "a"
        assert p.age == 5
        p.put("b", b"v", 2)
        assert p.count("b") == 6
        assert p.count("a") is None

    def test_old_popularity_fades(self) -> None:
        """A key read often long ago leaves once new keys turned the cache over enough.

        Without aging (plain LFU) the old favourite would stay for ever and one
        slot would be lost to it; with aging it is evicted, and a key that keeps
        being read stays.
        """
        p = LFUPolicy()
        s = Store(capacity_entries=4, policy=p)
        s.set("old", b"v")
        s.set("steady", b"v")
        for _ in range(20):
            s.get("old")
        for i in range(200):
            s.set(f"new{i}", b"v")
            s.get(f"new{i}")
            s.get("steady")
        assert "old" not in s
        assert "steady" in s
        assert p.age > 20

    def test_frequency_beats_recency_on_a_skewed_workload(self) -> None:
        """Half the requests go to 40 hot keys, half to 5,000 cold ones: LFU keeps the
        hot keys (they are read faster than the cache turns over), LRU loses them."""
        rng = random.Random(3)
        keys = [
            f"hot{rng.randrange(40)}" if rng.random() < 0.5 else f"cold{rng.randrange(5000)}"
            for _ in range(40_000)
        ]
        lfu_hits = replay(LFUPolicy(), 100, keys)
        lru_hits = replay(LRUPolicy(), 100, keys)
        assert lfu_hits > 0.45 * len(keys)
        assert lfu_hits > 1.1 * lru_hits


TestLFUPolicyMachine, TestLFUStoreMachine = machine_tests(LFUPolicy)
