"""Frequency sketch: counting, saturation, halving, the doorkeeper, growth without loss."""

from __future__ import annotations

from shoal.cli.hitratio import stable_hash
from shoal.policy._sketch import FrequencySketch


def sketch(entries: int = 64, *, doorkeeper: bool = True) -> FrequencySketch:
    s = FrequencySketch(hash_fn=stable_hash, doorkeeper=doorkeeper)
    s.ensure_capacity(entries)
    s.sample_size = 10 * entries
    return s


def test_counts_and_saturates_at_15() -> None:
    """Estimates follow increments up to 15 (plus the doorkeeper's 1), then stop."""
    s = sketch(doorkeeper=False)
    assert s.frequency("a") == 0
    for n in range(1, 21):
        s.increment("a")
        assert s.frequency("a") == min(n, 15)
    assert s.frequency("b") == 0


def test_doorkeeper_takes_the_first_sight() -> None:
    """The first increment only sets the doorkeeper; the counters see the later ones."""
    s = sketch()
    s.increment("a")
    assert s.frequency("a") == 1
    assert max(s.table) == 0
    s.increment("a")
    s.increment("a")
    assert s.frequency("a") == 3
    for _ in range(30):
        s.increment("a")
    assert s.frequency("a") == 16


def test_halving_after_the_sample() -> None:
    """Once sample_size increments are counted, counters halve and the doorkeeper clears."""
    s = sketch(entries=256)
    s.sample_size = 100
    for _ in range(11):
        s.increment("hot")
    assert s.frequency("hot") == 11  # 1 in the doorkeeper, 10 in the counters
    i, size = 0, s._size
    while s._size >= size:  # count distinct keys until the reset shrinks the count
        size = s._size
        s.increment(f"noise{i}")
        i += 1
    assert i == 100 - 11
    assert s.frequency("hot") == 5  # counters 10 -> 5; the doorkeeper bit is gone
    assert s.frequency("noise0") == 0


def test_reset_halves_counters_exactly() -> None:
    """reset() halves each counter (rounding down) and adjusts the sample count."""
    s = sketch(doorkeeper=False)
    for _ in range(7):
        s.increment("a")
    for _ in range(4):
        s.increment("b")
    size = s._size
    s.reset()
    assert s.frequency("a") == 3
    assert s.frequency("b") == 2
    assert s._size < size


def test_growth_keeps_every_estimate() -> None:
    """Growing the table (a power of two, copied) keeps every key's estimate."""
    s = sketch(entries=8)
    keys = [f"k{i}" for i in range(40)]
    for i, key in enumerate(keys):
        for _ in range(i % 9):
            s.increment(key)
    before = {k: s.frequency(k) for k in keys}
    s.ensure_capacity(1000)
    assert s.capacity == 1024
    assert {k: s.frequency(k) for k in keys} == before
    s.ensure_capacity(10)  # never shrinks
    assert s.capacity == 1024


def test_estimates_are_close_on_a_skewed_stream() -> None:
    """With 16 counters per entry, the estimate of a key is rarely above its true count."""
    s = sketch(entries=512, doorkeeper=False)
    s.sample_size = 10**9
    true: dict[str, int] = {}
    for i in range(5000):
        key = f"k{(i * 7919) % 600 if i % 3 else i % 20}"
        true[key] = true.get(key, 0) + 1
        s.increment(key)
    over = sum(1 for k, n in true.items() if s.frequency(k) > min(n, 15))
    assert all(s.frequency(k) >= min(n, 15) for k, n in true.items())
    assert over <= len(true) // 20


def test_a_hit_counts_like_a_first_sight_would() -> None:
    """increment_seen skips the doorkeeper but leaves the same estimate as increment."""
    one, other = sketch(), sketch()
    for _ in range(4):
        one.increment("a")
    other.increment("a")
    for _ in range(3):
        other.increment_seen("a")
    assert one.frequency("a") == other.frequency("a") == 4
