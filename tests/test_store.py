"""Store: bounds, exact accounting, TTL with a manual clock, thread safety."""

from __future__ import annotations

import threading

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shoal.errors import ConfigError
from shoal.store import Store
from shoal.testing import ManualClock


class TestBounds:
    def test_byte_bound_evicts_lru(self) -> None:
        """Cost is len(key)+len(value); the least recently used entry leaves first."""
        s = Store(capacity_bytes=30)
        s.set("a", b"x" * 9)  # 10
        s.set("b", b"x" * 9)  # 20
        s.get("a")
        s.set("c", b"x" * 9)  # 30: fits exactly
        assert s.nbytes == 30
        s.set("d", b"x")  # 32 > 30: evicts b, the least recently used
        assert "b" not in s
        assert {"a", "c", "d"} <= {k for k in "acd" if k in s}
        assert s.nbytes == 22
        assert s.statistics().evictions == 1

    def test_entry_bound(self) -> None:
        """An entry bound evicts by count."""
        s = Store(capacity_entries=2)
        for k in "abc":
            s.set(k, b"v")
        assert len(s) == 2
        assert "a" not in s
        assert s.statistics().items == 2

    def test_both_bounds(self) -> None:
        """Whichever bound is hit first evicts."""
        s = Store(capacity_bytes=100, capacity_entries=3)
        for k in "abcd":
            s.set(k, b"1")
        assert len(s) == 3
        s.set("e", b"x" * 98)
        assert len(s) == 1
        assert s.nbytes == 99

    def test_oversized_entry_is_rejected_and_drops_the_old_value(self) -> None:
        """An entry larger than the whole budget is not stored and never serves stale."""
        s = Store(capacity_bytes=10)
        assert s.set("k", b"old")
        assert not s.set("k", b"x" * 20)
        assert s.get("k") is None
        assert s.nbytes == 0

    @pytest.mark.parametrize("bound", [{"capacity_bytes": 0}, {"capacity_entries": -1}])
    def test_bad_bounds(self, bound: dict[str, int]) -> None:
        """Non-positive bounds are a ConfigError."""
        with pytest.raises(ConfigError):
            Store(**bound)  # type: ignore[arg-type]

    def test_unknown_policy(self) -> None:
        """An unknown policy name is a ConfigError."""
        with pytest.raises(ConfigError):
            Store(capacity_bytes=1, policy="nope")


class TestAccounting:
    def test_replace_and_delete_are_exact(self) -> None:
        """Replacing or deleting never leaks bytes (groupcache #51/#52)."""
        s = Store(capacity_bytes=1000)
        s.set("key", b"12345")
        s.set("key", b"1")
        assert s.nbytes == 4
        s.set("key", b"1234567890")
        assert s.nbytes == 13
        assert s.delete("key")
        assert not s.delete("key")
        assert s.nbytes == 0
        assert len(s) == 0

    def test_statistics(self) -> None:
        """gets and hits count every lookup; peek counts nothing."""
        s = Store(capacity_bytes=1000)
        s.set("a", b"1")
        s.get("a")
        s.get("b")
        s.peek("a")
        st_ = s.statistics()
        assert (st_.gets, st_.hits, st_.items, st_.bytes) == (2, 1, 1, 2)
        assert st_.as_dict()["capacity_bytes"] == 1000


class TestTTL:
    def test_lazy_expiry_on_read(self) -> None:
        """An expired entry is a miss, is removed and its bytes reclaimed."""
        clock = ManualClock()
        s = Store(capacity_bytes=100, clock=clock)
        s.set("a", b"1", ttl=10)
        clock.advance(9.9)
        assert s.get("a") == b"1"
        clock.advance(0.1)
        assert s.peek("a") is None
        assert s.get("a") is None
        assert s.nbytes == 0
        assert len(s) == 0
        assert s.statistics().expirations == 1

    def test_expires_at_is_absolute(self) -> None:
        """expires_at wins over ttl and is on the store's clock."""
        clock = ManualClock(100)
        s = Store(capacity_bytes=100, clock=clock)
        s.set("a", b"1", ttl=1000, expires_at=105)
        assert s.expiry("a") == 105
        clock.advance(5)
        assert s.get("a") is None

    def test_sweep_reclaims_unread_entries(self) -> None:
        """A sweep removes expired entries nobody reads, and only those."""
        clock = ManualClock()
        s = Store(capacity_bytes=1000, clock=clock)
        for i in range(10):
            s.set(f"k{i}", b"v", ttl=1 + i)
        s.set("forever", b"v")
        clock.advance(5)
        assert s.sweep() == 5
        assert len(s) == 6
        assert s.nbytes == 5 * len("k5v") + len("foreverv")
        assert s.sweep() == 0

    def test_replace_resets_ttl(self) -> None:
        """A replace without TTL makes the entry permanent; the old heap item is stale."""
        clock = ManualClock()
        s = Store(capacity_bytes=1000, clock=clock)
        s.set("a", b"1", ttl=1)
        s.set("a", b"2")
        clock.advance(2)
        assert s.sweep() == 0
        assert s.get("a") == b"2"

    def test_sweep_limit(self) -> None:
        """A sweep stops after ``limit`` removals."""
        clock = ManualClock()
        s = Store(capacity_bytes=10_000, clock=clock)
        for i in range(100):
            s.set(f"k{i}", b"v", ttl=1)
        clock.advance(1)
        assert s.sweep(limit=30) == 30
        assert s.sweep() == 70


class TestThreads:
    def test_concurrent_writers_keep_accounting_exact(self) -> None:
        """Many threads hammering set/get/delete leave bytes == sum of costs."""
        s = Store(capacity_bytes=5000, capacity_entries=200)
        barrier = threading.Barrier(8)

        def work(n: int) -> None:
            barrier.wait()
            for i in range(3000):
                k = f"k{(i * 7 + n) % 500}"
                if i % 5 == 0:
                    s.delete(k)
                elif i % 3 == 0:
                    s.get(k)
                else:
                    s.set(k, b"x" * (i % 40))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        held = {k: s.peek(k) for k in (f"k{i}" for i in range(500))}
        total = sum(len(k) + len(v) for k, v in held.items() if v is not None)
        assert s.nbytes == total <= 5000
        assert len(s) <= 200


class StoreMachine(RuleBasedStateMachine):
    """Random set/replace/delete/expire/sweep against a model dict."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.store = Store(capacity_bytes=64, capacity_entries=6, clock=self.clock)
        self.model: dict[str, tuple[bytes, float | None]] = {}

    keys = st.sampled_from([f"k{i}" for i in range(10)])

    @rule(key=keys, size=st.integers(0, 70), ttl=st.one_of(st.none(), st.integers(1, 5)))
    def set(self, key: str, size: int, ttl: int | None) -> None:
        stored = self.store.set(key, b"v" * size, ttl=ttl)
        self.model.pop(key, None)
        if stored:
            expiry = None if ttl is None else self.clock() + ttl
            self.model[key] = (b"v" * size, expiry)

    @rule(key=keys)
    def delete(self, key: str) -> None:
        self.store.delete(key)
        self.model.pop(key, None)

    @rule(key=keys)
    def get(self, key: str) -> None:
        got = self.store.get(key)
        if got is not None:
            value, expiry = self.model[key]
            assert got == value
            assert expiry is None or expiry > self.clock()

    @rule(seconds=st.integers(1, 3))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: True)
    @rule()
    def sweep(self) -> None:
        self.store.sweep()
        now = self.clock()
        for key, (_, expiry) in list(self.model.items()):
            if expiry is not None and expiry <= now:
                assert self.store.peek(key) is None

    @invariant()
    def bounds_and_accounting(self) -> None:
        held = {k: self.store._policy.lookup(k) for k in list(self.store._policy.keys())}
        assert self.store.nbytes == sum(len(k) + len(v) for k, v in held.items() if v is not None)
        assert self.store.nbytes <= 64
        assert len(self.store) <= 6
        # Whatever is held was written and never deleted since (eviction may drop more).
        for k, v in held.items():
            assert k in self.model
            assert self.model[k][0] == v


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
