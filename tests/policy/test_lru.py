"""LRU policy: the contract plus recency order."""

from __future__ import annotations

from helpers.policy_contract import PolicyContract, machine_tests
from shoal.policy import LRUPolicy


class TestLRU(PolicyContract):
    make = LRUPolicy

    def test_evicts_least_recently_used(self) -> None:
        """A touch or a replace makes an entry the most recent; the oldest goes first."""
        p = LRUPolicy()
        for k in "abcd":
            p.put(k, b"v", 2)
        p.touch("a")
        p.put("b", b"w", 2)
        assert [p.evict()[0] for _ in range(4)] == ["c", "d", "a", "b"]

    def test_lookup_does_not_touch_order(self) -> None:
        """lookup() reads without promoting."""
        p = LRUPolicy()
        p.put("a", b"1", 2)
        p.put("b", b"2", 2)
        p.lookup("a")
        assert p.evict() == ("a", b"1")

    def test_hit_path_is_c_level(self) -> None:
        """lookup and touch are the OrderedDict's own C methods (no Python frame per hit)."""
        p = LRUPolicy()
        assert type(p.lookup).__name__ == "builtin_function_or_method"
        assert type(p.touch).__name__ == "builtin_function_or_method"


TestLRUPolicyMachine, TestLRUStoreMachine = machine_tests(LRUPolicy)
