"""The contract every eviction policy meets, run against each one.

Two layers: the policy alone (put, lookup, touch, remove, evict, clear), and the
policy inside a :class:`~shoal.store.Store`, which drives eviction by its bounds:
capacity is never exceeded in entries or bytes, deletes, replaces and expiries
keep the byte accounting exact, and nothing is evicted before the store is full.
Plus two hypothesis state machines (:func:`policy_machine`, :func:`store_machine`)
that each policy's test module instantiates.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shoal.errors import ConfigError
from shoal.policy import Policy
from shoal.store import Store
from shoal.testing import ManualClock


def check_internals(policy: Policy) -> None:
    """Run the policy's own invariant check, where it has one."""
    check: Callable[[], None] | None = getattr(policy, "_check", None)
    if check is not None:
        check()


def held(store: Store) -> dict[str, bytes]:
    """What the store's policy holds, expired entries not yet reclaimed included."""
    policy: Policy = store._policy
    values = {k: policy.lookup(k) for k in list(policy.keys())}
    return {k: v for k, v in values.items() if v is not None}


def assert_exact(store: Store) -> None:
    """The store's byte count is the sum of the costs of what its policy holds."""
    entries = held(store)
    assert len(entries) == len(store)
    assert store.nbytes == sum(len(k) + len(v) for k, v in entries.items())
    check_internals(store._policy)


class PolicyContract:
    """Mix into a test class and set ``make`` to a factory of empty policies."""

    make: ClassVar[Callable[[], Policy]]

    def policy(self) -> Policy:
        return type(self).make()

    def store(
        self,
        clock: ManualClock | None = None,
        *,
        capacity_entries: int | None = None,
        capacity_bytes: int | None = None,
    ) -> Store:
        return Store(
            policy=type(self).make(),
            clock=clock or ManualClock(),
            capacity_entries=capacity_entries,
            capacity_bytes=capacity_bytes,
        )

    # -- the policy alone --------------------------------------------------------

    def test_empty(self) -> None:
        """A new policy holds nothing and has nothing to evict."""
        p = self.policy()
        assert len(p) == 0
        assert p.lookup("a") is None
        assert "a" not in p
        with pytest.raises(KeyError):
            p.evict()

    def test_put_get_remove(self) -> None:
        """Put stores, get returns, remove returns the value once."""
        p = self.policy()
        assert p.put("a", b"1", 2) is None
        assert p.lookup("a") == b"1"
        p.touch("a")
        assert "a" in p
        assert len(p) == 1
        assert p.remove("a") == b"1"
        assert p.remove("a") is None
        assert len(p) == 0
        assert "a" not in p

    def test_replace_returns_old_value(self) -> None:
        """A replace returns the old value and keeps one entry."""
        p = self.policy()
        p.put("a", b"1", 2)
        assert p.put("a", b"22", 3) == b"1"
        assert len(p) == 1
        assert p.lookup("a") == b"22"

    def test_empty_key_and_value(self) -> None:
        """The empty key and the empty value are ordinary entries."""
        p = self.policy()
        p.put("", b"", 0)
        p.put("b", b"", 1)
        assert p.lookup("") == b""
        p.touch("")
        assert sorted(dict(p.evict() for _ in range(2))) == ["", "b"]

    def test_evict_drains_every_entry_once(self) -> None:
        """Evicting until empty returns each entry exactly once, with its value."""
        p = self.policy()
        items = {f"k{i}": str(i).encode() for i in range(50)}
        for k, v in items.items():
            p.put(k, v, len(k) + len(v))
        for k in list(items)[::3]:
            p.touch(k)
        seen = dict(p.evict() for _ in range(len(items)))
        assert seen == items
        assert len(p) == 0
        with pytest.raises(KeyError):
            p.evict()

    def test_clear_and_keys(self) -> None:
        """keys() lists what is held; clear() empties; the policy is usable after."""
        p = self.policy()
        for k in "abc":
            p.put(k, b"v", 2)
        assert sorted(p.keys()) == ["a", "b", "c"]
        p.clear()
        assert len(p) == 0
        assert list(p.keys()) == []
        p.put("d", b"v", 2)
        assert list(p.keys()) == ["d"]

    def test_set_capacity_validates(self) -> None:
        """Bounds must be positive; a policy that holds entries cannot be resized."""
        with pytest.raises(ConfigError):
            self.policy().set_capacity(capacity_entries=0, capacity_bytes=None)
        with pytest.raises(ConfigError):
            self.policy().set_capacity(capacity_entries=None, capacity_bytes=-5)
        p = self.policy()
        p.put("a", b"1", 2)
        with pytest.raises(ConfigError):
            p.set_capacity(capacity_entries=10, capacity_bytes=None)

    # -- inside a store ----------------------------------------------------------

    def test_no_eviction_until_full(self) -> None:
        """Exactly capacity entries fit; the next one evicts exactly one."""
        s = self.store(capacity_entries=20)
        for i in range(20):
            s.set(f"k{i}", b"v")
            s.get(f"k{i // 2}")
        assert s.statistics().evictions == 0
        assert all(f"k{i}" in s for i in range(20))
        s.set("new", b"v")
        assert s.statistics().evictions == 1
        assert len(s) == 20
        assert_exact(s)

    def test_no_eviction_until_bytes_full(self) -> None:
        """Entries filling the byte budget exactly all stay; one more byte evicts."""
        s = self.store(capacity_bytes=100)
        for i in range(10):
            s.set(f"k{i}", b"x" * 8)  # cost 10 each
        assert s.nbytes == 100
        assert s.statistics().evictions == 0
        s.set("k0", b"x" * 9)  # a replace growing the entry by one byte
        assert s.nbytes <= 100
        assert s.statistics().evictions >= 1
        assert_exact(s)

    @pytest.mark.parametrize(
        "bounds",
        [
            {"capacity_entries": 16},
            {"capacity_bytes": 400},
            {"capacity_entries": 12, "capacity_bytes": 300},
        ],
        ids=["entries", "bytes", "both"],
    )
    def test_bounds_hold_under_load(self, bounds: dict[str, int]) -> None:
        """A skewed random workload never takes the store past a bound; bytes stay exact."""
        rng = random.Random(7)
        limit_entries = bounds.get("capacity_entries")
        limit_bytes = bounds.get("capacity_bytes")
        s = self.store(capacity_entries=limit_entries, capacity_bytes=limit_bytes)
        for step in range(3000):
            key = f"k{int(rng.paretovariate(1.2)) % 200}"
            op = rng.random()
            if op < 0.55:
                if s.get(key) is None:
                    s.set(key, b"x" * rng.randrange(0, 40))
            elif op < 0.85:
                s.set(key, b"y" * rng.randrange(0, 40))
            else:
                s.delete(key)
            assert limit_entries is None or len(s) <= limit_entries
            assert limit_bytes is None or s.nbytes <= limit_bytes
            if step % 100 == 0:
                assert_exact(s)
        assert_exact(s)
        assert s.statistics().evictions > 0

    def test_delete_replace_expire_keep_accounting_exact(self) -> None:
        """Replaces (growing and shrinking), deletes and expiries leave bytes exact."""
        clock = ManualClock()
        s = self.store(clock=clock, capacity_bytes=120, capacity_entries=8)
        for i in range(8):
            s.set(f"k{i}", b"v" * (i + 1), ttl=10 if i % 2 else None)
        s.get("k3")
        s.set("k3", b"w" * 30)
        s.set("k5", b"")
        assert s.delete("k2")
        assert_exact(s)
        clock.advance(11)
        assert s.get("k1") is None  # lazily expired
        s.sweep()
        assert_exact(s)
        assert all(s.expiry(k) is None for k in held(s))
        for i in range(20):
            s.set(f"n{i}", b"z" * (i % 7))
            assert_exact(s)
        assert s.nbytes <= 120
        assert len(s) <= 8

    def test_entry_larger_than_budget_is_refused(self) -> None:
        """An entry over the byte budget is not stored, and the policy is left consistent."""
        s = self.store(capacity_bytes=50)
        s.set("a", b"1")
        assert not s.set("a", b"x" * 60)
        assert s.get("a") is None
        assert s.set("b", b"x" * 48)
        assert_exact(s)

    def test_clear_then_reuse(self) -> None:
        """A cleared store starts over with exact accounting."""
        s = self.store(capacity_entries=5)
        for i in range(12):
            s.set(f"k{i}", b"v")
        s.clear()
        assert len(s) == 0
        assert s.nbytes == 0
        for i in range(12):
            s.set(f"j{i}", b"vv")
            s.get(f"j{i // 2}")
        assert len(s) == 5
        assert_exact(s)


# -- hypothesis state machines ---------------------------------------------------

_KEYS = st.sampled_from([f"k{i}" for i in range(12)] + [""])


def policy_machine(make: Callable[[], Policy]) -> type[RuleBasedStateMachine]:
    """A state machine driving a bare policy against a model dict.

    Any order of puts, replaces, touches, removes and evictions (even evictions
    the store would never ask for) keeps the policy equal to the model minus
    what it evicted, and the policy's own invariants hold.
    """

    class PolicyMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.policy = make()
            self.model: dict[str, bytes] = {}

        @rule(key=_KEYS, size=st.integers(0, 20))
        def put(self, key: str, size: int) -> None:
            value = bytes([65 + size]) * size
            old = self.policy.put(key, value, len(key) + size)
            assert old == self.model.get(key)
            self.model[key] = value

        @precondition(lambda self: bool(self.model))
        @rule(data=st.data())
        def touch(self, data: st.DataObject) -> None:
            key = data.draw(st.sampled_from(sorted(self.model)))
            self.policy.touch(key)

        @rule(key=_KEYS)
        def remove(self, key: str) -> None:
            assert self.policy.remove(key) == self.model.pop(key, None)

        @rule()
        def evict(self) -> None:
            if not self.model:
                with pytest.raises(KeyError):
                    self.policy.evict()
                return
            key, value = self.policy.evict()
            assert self.model.pop(key) == value

        @rule(key=_KEYS)
        def lookup(self, key: str) -> None:
            assert self.policy.lookup(key) == self.model.get(key)
            assert (key in self.policy) == (key in self.model)

        @invariant()
        def same_as_model(self) -> None:
            assert len(self.policy) == len(self.model)
            assert sorted(self.policy.keys()) == sorted(self.model)
            check_internals(self.policy)

    PolicyMachine.TestCase.settings = settings(
        max_examples=50, stateful_step_count=30, deadline=None
    )
    return PolicyMachine


def store_machine(make: Callable[[], Policy]) -> type[RuleBasedStateMachine]:
    """A state machine driving a store with this policy against a model dict.

    Random sets, replaces, deletes, reads, clock advances and sweeps: the store
    never exceeds a bound, its bytes equal the costs of what it holds, and it
    never returns a deleted, replaced or expired value.
    """

    class StoreMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.clock = ManualClock()
            self.store = Store(
                capacity_bytes=64, capacity_entries=6, policy=make(), clock=self.clock
            )
            self.model: dict[str, tuple[bytes, float | None]] = {}

        @rule(key=_KEYS, size=st.integers(0, 70), ttl=st.one_of(st.none(), st.integers(1, 5)))
        def set(self, key: str, size: int, ttl: int | None) -> None:
            value = bytes([65 + size % 26]) * size
            stored = self.store.set(key, value, ttl=ttl)
            self.model.pop(key, None)
            if stored:
                self.model[key] = (value, None if ttl is None else self.clock() + ttl)

        @rule(key=_KEYS)
        def delete(self, key: str) -> None:
            self.store.delete(key)
            self.model.pop(key, None)

        @rule(key=_KEYS)
        def get(self, key: str) -> None:
            got = self.store.get(key)
            if got is not None:
                value, expiry = self.model[key]
                assert got == value
                assert expiry is None or expiry > self.clock()

        @rule(seconds=st.integers(1, 3))
        def advance(self, seconds: int) -> None:
            self.clock.advance(seconds)

        @rule()
        def sweep(self) -> None:
            self.store.sweep()

        @invariant()
        def bounds_and_accounting(self) -> None:
            assert self.store.nbytes <= 64
            assert len(self.store) <= 6
            assert_exact(self.store)
            for k, v in held(self.store).items():
                assert self.model[k][0] == v

    StoreMachine.TestCase.settings = settings(
        max_examples=50, stateful_step_count=30, deadline=None
    )
    return StoreMachine


def machine_tests(make: Callable[[], Policy]) -> tuple[Any, Any]:
    """The two state machines' test cases, to bind to names in a test module."""
    return policy_machine(make).TestCase, store_machine(make).TestCase
