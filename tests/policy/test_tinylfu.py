"""W-TinyLFU policy: the contract, admission by frequency, the regions, and the climber."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from helpers.policy_contract import PolicyContract, machine_tests
from shoal.cli.hitratio import stable_hash
from shoal.policy import LRUPolicy, Policy, TinyLFUPolicy
from shoal.policy._sketch import FrequencySketch
from shoal.store import Store


def make() -> TinyLFUPolicy:
    return TinyLFUPolicy(rng=random.Random(1), hash_fn=stable_hash)


def request(policy: Policy, capacity: int, key: str) -> bool:
    """One request as a store makes it; return whether it was a hit."""
    if policy.lookup(key) is not None:
        policy.touch(key)
        return True
    policy.put(key, b"v", 1)
    while len(policy) > capacity:
        policy.evict()
    return False


def lru_stack_stream(n: int, seed: int) -> list[str]:
    """Requests that favour recency: 30% new keys, the rest re-reads of a recent key at
    an exponentially distributed stack distance (mean 60)."""
    rng = random.Random(seed)
    recent: list[str] = []
    keys: list[str] = []
    for i in range(n):
        if not recent or rng.random() < 0.3:
            key = f"n{i}"
        else:
            key = recent[-1 - min(int(rng.expovariate(1 / 60)), len(recent) - 1)]
        keys.append(key)
        recent.append(key)
        if len(recent) > 2000:
            del recent[:1000]
    return keys


class FixedBits(random.Random):
    """A generator whose getrandbits always returns ``bits`` (for the jitter)."""

    def __init__(self, bits: int) -> None:
        super().__init__(0)
        self.bits = bits

    def getrandbits(self, k: int) -> int:
        return self.bits


class TestTinyLFU(PolicyContract):
    make = staticmethod(make)

    def test_regions_start_as_in_caffeine(self) -> None:
        """A 1% window; protected is 80% of the main space."""
        p = TinyLFUPolicy(capacity_entries=1000)
        assert p.window_maximum == 10
        assert p.protected_maximum == 792
        p = TinyLFUPolicy(capacity_entries=250)
        assert (p.window_maximum, p.protected_maximum) == (3, 197)

    def test_rejects_a_one_hit_wonder_against_a_frequent_key(self) -> None:
        """Keys read often stay; each one-time key leaves when the next pushes it out of
        the window. Under LRU the same stream flushes the frequent keys."""
        capacity = 20
        tiny = TinyLFUPolicy(capacity_entries=capacity, rng=random.Random(1), hash_fn=stable_hash)
        lru = LRUPolicy()
        frequent = [f"f{i}" for i in range(capacity - 1)]
        for policy in (tiny, lru):
            for _ in range(5):
                for key in frequent:
                    request(policy, capacity, key)
        for i in range(200):
            request(tiny, capacity, f"once{i}")
            request(lru, capacity, f"once{i}")
            assert all(key in tiny for key in frequent)
            assert f"once{i - 1}" not in tiny
        assert tiny.frequency("f0") > tiny.frequency("once150")
        assert not any(key in lru for key in frequent)

    def test_admits_a_newcomer_that_turns_frequent(self) -> None:
        """A new key read often while in the window wins its duel and enters the main space."""
        capacity = 20
        p = TinyLFUPolicy(capacity_entries=capacity, rng=random.Random(1), hash_fn=stable_hash)
        for _ in range(2):
            for i in range(capacity):
                request(p, capacity, f"k{i}")
        request(p, capacity, "star")
        for _ in range(6):
            request(p, capacity, "star")
        for i in range(5):
            request(p, capacity, f"once{i}")
        assert "star" in p
        assert p.region("star") in ("probation", "protected")

    def test_probation_hit_promotes_and_protected_overflow_demotes(self) -> None:
        """A hit on probation moves a key to protected; protected over its share loses its
        oldest to probation at the next write."""
        p = TinyLFUPolicy(capacity_entries=100, rng=random.Random(1), hash_fn=stable_hash)
        for i in range(100):
            request(p, 100, f"k{i}")
        assert p.region("k0") == "probation"
        request(p, 100, "k0")
        assert p.region("k0") == "protected"
        for i in range(1, 99):
            request(p, 100, f"k{i}")
        assert sum(p.region(f"k{i}") == "protected" for i in range(99)) == 99
        request(p, 100, "new")  # maintenance: protected shrinks to its share
        protected = sum(p.region(f"k{i}") == "protected" for i in range(99))
        assert protected == p.protected_maximum
        assert p.region("k0") == "probation"  # the oldest of protected went first

    @pytest.mark.parametrize(("bits", "admitted"), [(0, True), (5, False)])
    def test_warm_candidates_are_sometimes_admitted(self, bits: int, admitted: bool) -> None:
        """A warm candidate (estimate >= 6) that loses its duel still gets in 1 time in 128:
        an attacker cannot make a victim unbeatable (hash-flooding defence)."""
        p = TinyLFUPolicy(capacity_entries=10, rng=FixedBits(bits), hash_fn=stable_hash)
        for i in range(10):
            p.put(f"k{i}", b"v", 1)
        for _ in range(12):
            p.touch("k0")
        for _ in range(7):
            p._sketch.increment("warm")
        assert 6 <= p.frequency("warm") < p.frequency("k0")
        assert p._admit("warm", "k0") is admitted

    def test_cold_candidates_are_never_admitted_at_random(self) -> None:
        """Below the warm threshold a losing candidate is always refused."""
        p = TinyLFUPolicy(capacity_entries=10, rng=FixedBits(0), hash_fn=stable_hash)
        for i in range(10):
            p.put(f"k{i}", b"v", 1)
            for _ in range(8):
                p.touch(f"k{i}")
        p._sketch.increment("cold")
        assert not p._admit("cold", "k0")

    def test_window_grows_on_a_recency_biased_workload(self) -> None:
        """On an LRU-friendly stream (reuse at short stack distances, no popular keys)
        the climber grows the window far past 1%, which wins back most of what a
        fixed 1% window loses to LRU."""
        capacity = 200
        keys = lru_stack_stream(60_000, seed=5)

        def hits(policy: Policy) -> int:
            return sum(request(policy, capacity, key) for key in keys)

        tiny = TinyLFUPolicy(capacity_entries=capacity, rng=random.Random(1), hash_fn=stable_hash)
        start = tiny.window_maximum
        adaptive = hits(tiny)
        fixed = hits(
            TinyLFUPolicy(
                capacity_entries=capacity,
                rng=random.Random(1),
                hash_fn=stable_hash,
                adaptive=False,
            )
        )
        lru = hits(LRUPolicy())
        assert tiny.window_maximum > 10 * start
        assert adaptive > fixed + 0.15 * len(keys)
        assert adaptive > lru - 0.06 * len(keys)

    def test_window_stays_small_on_a_frequency_biased_workload(self) -> None:
        """With a stable popular set and one-time noise, the window stays at its minimum."""
        capacity = 200
        rng = random.Random(4)
        p = TinyLFUPolicy(capacity_entries=capacity, rng=random.Random(1), hash_fn=stable_hash)
        for _ in range(60_000):
            key = f"hot{rng.randrange(150)}" if rng.random() < 0.6 else f"x{rng.randrange(10**6)}"
            request(p, capacity, key)
        assert p.window_maximum <= 0.02 * capacity

    def test_byte_bounded_regions_are_in_bytes(self) -> None:
        """With a byte bound the regions are shares of the byte budget."""
        p = TinyLFUPolicy(rng=random.Random(1), hash_fn=stable_hash)
        s = Store(capacity_bytes=10_000, policy=p)
        assert p.window_maximum == 100
        rng = random.Random(2)
        for _ in range(5000):
            key = f"k{int(rng.paretovariate(1.0)) % 500}"
            if s.get(key) is None:
                s.set(key, b"x" * rng.randrange(1, 200))
        assert s.nbytes <= 10_000
        p._check()
        assert p._wwindow + p._wprobation + p._wprotected == s.nbytes

    def test_replace_of_a_bigger_value_keeps_regions_exact(self) -> None:
        """Growing an entry in place moves the region weights with it."""
        p = make()
        s = Store(capacity_bytes=500, policy=p)
        for i in range(40):
            s.set(f"k{i:02d}", b"x" * 8)
        s.set("k39", b"y" * 200)
        assert s.nbytes <= 500
        p._check()


TestTinyLFUPolicyMachine, TestTinyLFUStoreMachine = machine_tests(make)


@pytest.mark.parametrize("native", [True, False], ids=["compiled", "python"])
def test_hit_path_counts_like_the_sketch(native: bool) -> None:
    """The hit path (compiled or inlined) leaves the sketch as increment_seen would."""
    p = TinyLFUPolicy(rng=random.Random(1), hash_fn=stable_hash, native=native)
    reference = FrequencySketch(hash_fn=stable_hash, doorkeeper=False)
    for key in ("a", "b"):
        p.put(key, b"v", 2)
        reference.increment(key)
    for _ in range(5):
        p.touch("a")
        reference.increment_seen("a")
    p.touch("b")
    reference.increment_seen("b")
    assert bytes(p._sketch.table) == bytes(reference.table)
    assert (p.frequency("a"), p.frequency("b")) == (6, 2)


def test_the_compiled_hit_path_is_in_use() -> None:
    """The dev install builds shoal._speedups: the default hit path is the compiled one."""
    from shoal._speedups import SketchTouch

    assert isinstance(TinyLFUPolicy().touch, SketchTouch)
    assert not isinstance(TinyLFUPolicy(native=False).touch, SketchTouch)


@pytest.mark.parametrize("hash_fn", [stable_hash, hash], ids=["xxh3", "builtin"])
def test_compiled_and_python_hit_paths_give_the_same_hit_ratios(
    hash_fn: Callable[[str], int],
) -> None:
    """The same trace through both hit paths: the same hits, sketch, mode and regions."""
    keys = lru_stack_stream(20_000, seed=3) + [
        f"z{int(random.Random(i).paretovariate(1)) % 900}" for i in range(20_000)
    ]
    runs = []
    for native in (True, False):
        p = TinyLFUPolicy(
            capacity_entries=300, rng=random.Random(1), hash_fn=hash_fn, native=native
        )
        hits = sum(request(p, 300, key) for key in keys)
        runs.append((hits, bytes(p._sketch.table), p.mode, list(p.keys())))
    assert runs[0] == runs[1]


def test_lru_mode_on_a_recency_biased_workload() -> None:
    """Where LRU beats W-TinyLFU clearly (short stack distances, nothing popular), the
    miniatures say so and the policy runs as LRU: at most a point below LRU."""
    capacity = 200
    keys = lru_stack_stream(60_000, seed=5)
    p = TinyLFUPolicy(capacity_entries=capacity, rng=random.Random(1), hash_fn=stable_hash)
    mine = sum(request(p, capacity, key) for key in keys)
    baseline = LRUPolicy()
    lru = sum(request(baseline, capacity, key) for key in keys)
    assert lru > 0.3 * len(keys)
    assert p.mode == "lru"
    assert p.window_maximum == capacity
    assert mine >= lru - 0.01 * len(keys)
    p._check()


def test_stays_tinylfu_on_a_frequency_biased_workload() -> None:
    """With a stable popular set and one-time noise, W-TinyLFU wins and stays."""
    capacity = 200
    rng = random.Random(4)
    p = TinyLFUPolicy(capacity_entries=capacity, rng=random.Random(1), hash_fn=stable_hash)
    for _ in range(60_000):
        key = f"hot{rng.randrange(150)}" if rng.random() < 0.6 else f"x{rng.randrange(10**6)}"
        request(p, capacity, key)
    assert p.mode == "tinylfu"


@pytest.mark.parametrize(
    ("entries", "nbytes"),
    [(100, None), (None, 4000), (100, 4000)],
    ids=["entries", "bytes", "both"],
)
def test_modes_keep_every_entry(entries: int | None, nbytes: int | None) -> None:
    """Switching modes keeps the entries, the store's bounds and the invariants, in and
    out of ARC, with entry and byte bounds."""
    p = make()
    s = Store(capacity_entries=entries, capacity_bytes=nbytes, policy=p)
    rng = random.Random(7)
    for mode in ("lru", "arc", "tinylfu", "arc", "lru", "tinylfu", "arc"):
        for _ in range(500):
            key = f"k{int(rng.paretovariate(1.0)) % 300}"
            if s.get(key) is None:
                s.set(key, b"v" * rng.randrange(1, 60))
            if rng.random() < 0.05:
                s.delete(f"k{rng.randrange(300)}")
        held = set(p.keys())
        p._switch(mode)
        assert p.mode == mode
        assert set(p.keys()) == held
        p._check()
        assert len(s) <= (entries or 10**9)
        assert s.nbytes <= (nbytes or 10**9)


def test_modes_under_a_byte_bound() -> None:
    """With a byte bound the miniatures weigh entries in bytes too: on a recency-biased
    stream of mixed sizes the policy goes to LRU mode and the store keeps its bound."""
    p = make()
    s = Store(capacity_bytes=20_000, policy=p)
    for key in lru_stack_stream(60_000, seed=5):
        if s.get(key) is None:
            s.set(key, b"x" * (50 + 7 * len(key)))
        assert s.nbytes <= 20_000
    assert p.mode == "lru"
    p._check()
