"""FIFO policy: the contract plus insertion order that reads never change."""

from __future__ import annotations

from helpers.policy_contract import PolicyContract, machine_tests
from shoal.policy import FIFOPolicy
from shoal.store import Store


class TestFIFO(PolicyContract):
    make = FIFOPolicy

    def test_evicts_in_insertion_order(self) -> None:
        """Touches and replaces do not move an entry: the first inserted leaves first."""
        p = FIFOPolicy()
        for k in "abcd":
            p.put(k, b"v", 2)
        p.touch("a")
        p.touch("a")
        assert p.put("b", b"w", 2) == b"v"
        assert [p.evict()[0] for _ in range(4)] == ["a", "b", "c", "d"]

    def test_reinsert_after_remove_goes_last(self) -> None:
        """A key removed and inserted again queues at the end."""
        p = FIFOPolicy()
        for k in "abc":
            p.put(k, b"v", 2)
        p.remove("a")
        p.put("a", b"v", 2)
        assert [p.evict()[0] for _ in range(3)] == ["b", "c", "a"]

    def test_hit_path_is_c_level(self) -> None:
        """A store hit calls only C functions in the policy."""
        p = FIFOPolicy()
        assert type(p.lookup).__name__ == "builtin_function_or_method"
        assert type(p.touch).__name__ == "builtin_function_or_method"

    def test_store_hits_do_not_save_an_entry(self) -> None:
        """In a store, a much-read entry still leaves when its turn comes."""
        s = Store(capacity_entries=3, policy=FIFOPolicy())
        for k in "abc":
            s.set(k, b"v")
        for _ in range(10):
            assert s.get("a") == b"v"
        s.set("d", b"v")
        assert "a" not in s
        assert all(k in s for k in "bcd")


TestFIFOPolicyMachine, TestFIFOStoreMachine = machine_tests(FIFOPolicy)
