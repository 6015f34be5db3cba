"""ARC policy: the contract, the paper's steps on a worked example, and adaptation."""

from __future__ import annotations

import random

from helpers.policy_contract import PolicyContract, machine_tests
from shoal.policy import ARCPolicy, LRUPolicy, Policy
from shoal.store import Store


def request(policy: Policy, capacity: int, key: str) -> bool:
    """One request as a store makes it; return whether it was a hit."""
    if policy.lookup(key) is not None:
        policy.touch(key)
        return True
    policy.put(key, b"v", 1)
    while len(policy) > capacity:
        policy.evict()
    return False


def lists(p: ARCPolicy) -> tuple[list[str], list[str], list[str], list[str]]:
    """T1, T2, B1, B2, each least recent first."""
    return list(p._t1), list(p._t2), list(p._b1), list(p._b2)


class TestARC(PolicyContract):
    make = ARCPolicy

    def test_worked_example(self) -> None:
        """c = 2, requests a a b c b a d e, step by step as in the paper's Fig. 4."""
        p = ARCPolicy(capacity_entries=2)
        assert not request(p, 2, "a")
        assert request(p, 2, "a")  # a hit in T1 moves a to T2
        assert not request(p, 2, "b")  # room left: no REPLACE
        assert lists(p) == (["b"], ["a"], [], [])
        # Case IV(ii): |L1| + |L2| = c, so REPLACE(p = 0): |T1| = 1 > p, b goes to B1.
        assert not request(p, 2, "c")
        assert lists(p) == (["c"], ["a"], ["b"], [])
        # Case II: b hits B1: p = min(2, 0 + max(|B2| / |B1|, 1)) = 1;
        # |T1| = 1 is not over p, so T2's oldest, a, goes to B2.
        assert not request(p, 2, "b")
        assert (lists(p), p.p) == ((["c"], ["b"], [], ["a"]), 1)
        # Case III: a hits B2: p = max(0, 1 - max(|B1| / |B2|, 1)) = 0; |T1| > p: c -> B1.
        assert not request(p, 2, "a")
        assert (lists(p), p.p) == (([], ["b", "a"], ["c"], []), 0)
        # Case IV(ii) with T1 empty: REPLACE takes T2's oldest.
        assert not request(p, 2, "d")
        assert lists(p) == (["d"], ["a"], ["c"], ["b"])
        # Case IV(i): |L1| = c with |T1| < c: B1's oldest ghost goes, then REPLACE.
        assert not request(p, 2, "e")
        assert lists(p) == (["e"], ["a"], ["d"], ["b"])

    def test_a_full_t1_loses_its_oldest_without_a_ghost(self) -> None:
        """Case IV(i) with B1 empty: T1 holds all c pages; the oldest is dropped, not ghosted."""
        p = ARCPolicy(capacity_entries=3)
        for key in "abcd":
            request(p, 3, key)
        assert lists(p) == (["b", "c", "d"], [], [], [])

    def test_scan_resistance(self) -> None:
        """Keys read twice (T2) survive a long scan of one-time keys; under LRU they do not."""
        arc, lru = ARCPolicy(capacity_entries=10), LRUPolicy()
        for policy in (arc, lru):
            for key in ("f0", "f1", "f2", "f3", "f4") * 2:
                request(policy, 10, key)
            for i in range(200):
                request(policy, 10, f"scan{i}")
        assert all(f"f{i}" in arc for i in range(5))
        assert not any(f"f{i}" in lru for i in range(5))

    def test_p_adapts_to_a_repeated_scan(self) -> None:
        """A scan that comes back (its keys hit B1) grows p; frequent keys hitting B2 shrink it."""
        c = 20
        p = ARCPolicy(capacity_entries=c)
        for _ in range(3):
            for i in range(10):
                request(p, c, f"hot{i}")
        assert p.p == 0
        assert p.sizes() == (0, 10, 0, 0)

        def scan() -> None:
            for i in range(15):
                request(p, c, f"scan{i}")

        # First pass: the scan fills T1 and spills into B1, T2 (the hot keys) is untouched.
        scan()
        assert p.p == 0
        assert all(f"hot{i}" in p for i in range(10))
        # Second pass: the scan's keys come back from B1, so T1 was too small: p grows.
        scan()
        grown = p.p
        assert grown > c // 2
        # The hot keys T2 gave up are ghosts in B2 now; their return shrinks p again.
        for i in range(10):
            request(p, c, f"hot{i}")
        assert p.p < grown
        assert all(f"hot{i}" in p for i in range(10))

    def test_directory_stays_within_2c(self) -> None:
        """Under a random workload |T1| + |B1| <= c and the four lists hold <= 2c."""
        rng = random.Random(5)
        c = 30
        p = ARCPolicy(capacity_entries=c)
        for _ in range(20_000):
            request(p, c, f"k{int(rng.paretovariate(0.8)) % 400}")
            t1, t2, b1, b2 = p.sizes()
            assert t1 + t2 <= c
            assert t1 + b1 <= c
            assert t1 + t2 + b1 + b2 <= 2 * c
            assert 0 <= p.p <= c
        p._check()

    def test_byte_bounded_sizes_are_in_bytes(self) -> None:
        """With a byte bound, T1/T2/B1/B2 and p are measured in bytes of key + value."""
        arc = ARCPolicy()
        s = Store(capacity_bytes=1000, policy=arc)
        rng = random.Random(9)
        for _ in range(5000):
            key = f"k{int(rng.paretovariate(1.0)) % 300}"
            if s.get(key) is None:
                s.set(key, b"x" * rng.randrange(1, 80))
            t1, t2, b1, b2 = arc.sizes()
            assert t1 + t2 == s.nbytes <= 1000
            assert t1 + b1 <= 1000
            assert t1 + t2 + b1 + b2 <= 2000
        assert arc.capacity == 1000

    def test_capacity_is_learnt_without_bounds(self) -> None:
        """A policy given no bounds takes the size it has at its first eviction as c."""
        p = ARCPolicy()
        for i in range(8):
            p.put(f"k{i}", b"v", 3)
        p.evict()
        assert p.capacity == 7


TestARCPolicyMachine, TestARCStoreMachine = machine_tests(ARCPolicy)
