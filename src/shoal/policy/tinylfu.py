"""W-TinyLFU: Caffeine's eviction policy. Not safe for concurrent use.

Three LRU regions share the capacity (Einziger, Friedman & Manes, "TinyLFU: A
Highly Efficient Cache Admission Policy", 2017; Caffeine's ``BoundedLocalCache``):

* the **window** (1% at first) takes every new entry, so a burst of new keys
  gets a chance to prove itself;
* the **main** space is a segmented LRU: **probation** for entries on trial
  and **protected** (80% of main) for entries read again while on probation.

An entry pushed out of the window becomes a *candidate*; when the cache is
over capacity it duels the main space's *victim* (the least recent entry on
probation), and the one with the lower estimated frequency goes. Frequencies
come from a :class:`~shoal.policy._sketch.FrequencySketch` (4-bit count-min
with periodic halving and a doorkeeper) that sees every access, hit or miss,
so a key's popularity is remembered after it leaves the cache.

Two Caffeine refinements:

* **hill climbing**: after each sample of requests (10 per entry) the window
  grows or shrinks by a step in the direction that last improved the hit ratio;
  the step decays, and restarts when the hit ratio changes sharply. Recency-
  biased workloads get a large window (LRU-like), frequency-biased ones a small one.
  Two refinements keep the climber from chasing noise: a sample ends at a
  halving of the sketch (so consecutive samples see the same phase of its
  aging), and while the window is pressed against a bound a small fall of the
  hit ratio does not turn the climber round (it did not move, so the fall is
  not its doing). Without them the window wanders off its best size and back
  on a loop: up to 5 points of hit ratio lost on the LIRS ``loop`` trace.
* **hash-flooding protection**: an attacker who can make a victim look hot
  could keep every newcomer out. A *warm* candidate (estimate at least 6) that
  loses its duel is still admitted with probability 1/128, so no victim is
  safe forever. The sketch's default hash is Python's keyed ``hash``, so
  colliding keys cannot be chosen in advance either.

Sizes are weights (see :mod:`._weight`): with a byte bound the regions are in
bytes, as Caffeine's weighted caches are. The store's protocol maps onto
Caffeine's maintenance cycle: :meth:`TinyLFUPolicy.put` adds to the window
and moves its overflow to probation; each :meth:`TinyLFUPolicy.evict` runs one
duel and returns its loser (which may be the candidate: that is how a
newcomer is refused); the hill climber runs at the start of the next put.
"""

from __future__ import annotations

import random
import sys
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from itertools import chain, islice

from ._sketch import FrequencySketch
from ._weight import Weigher, check_bounds

__all__ = ["TinyLFUPolicy"]

_PERCENT_MAIN = 0.99
_PERCENT_MAIN_PROTECTED = 0.80
_HILL_CLIMBER_RESTART_THRESHOLD = 0.05
_HILL_CLIMBER_STEP_PERCENT = 0.0625
_HILL_CLIMBER_STEP_DECAY_RATE = 0.98
_QUEUE_TRANSFER_THRESHOLD = 1000
_ADMIT_HASHDOS_THRESHOLD = 6
_UNBOUNDED = sys.maxsize


class TinyLFUPolicy:
    """W-TinyLFU: window LRU, segmented-LRU main space, frequency-sketch admission.

    Args:
        capacity_entries: the store's entry bound (or give it later to :meth:`set_capacity`).
        capacity_bytes: the store's byte bound.
        rng: randomness for the hash-flooding defence; default: seeded from the system.
        hash_fn: the sketch's hash (default ``hash``); inject a fixed one for
            results that repeat from one process to the next.
        adaptive: run the hill climber (default True); False keeps the window at 1%.
        doorkeeper: put a Bloom filter in front of the sketch (default True).

    ``lookup`` is a C ``dict.get``; ``touch`` counts the access in the sketch and
    moves the key within its region (from probation to protected). A replace
    counts as an access.
    """

    __slots__ = (
        "_adaptive",
        "_adjustment",
        "_blocked",
        "_candidates",
        "_frequency",
        "_hit_count",
        "_increment",
        "_last_weight",
        "_max",
        "_misses",
        "_previous_rate",
        "_probation",
        "_protected",
        "_protected_max",
        "_rng",
        "_sample_reset",
        "_sketch",
        "_step",
        "_values",
        "_weigher",
        "_weighted",
        "_window",
        "_window_max",
        "_window_skip",
        "_wprobation",
        "_wprotected",
        "_wwindow",
        "lookup",
        "touch",
    )

    def __init__(
        self,
        *,
        capacity_entries: int | None = None,
        capacity_bytes: int | None = None,
        rng: random.Random | None = None,
        hash_fn: Callable[[str], int] = hash,
        adaptive: bool = True,
        doorkeeper: bool = True,
    ) -> None:
        self._values: dict[str, bytes] = {}
        # key -> weight, least recently used first.
        self._window: OrderedDict[str, int] = OrderedDict()
        self._probation: OrderedDict[str, int] = OrderedDict()
        self._protected: OrderedDict[str, int] = OrderedDict()
        self._wwindow = self._wprobation = self._wprotected = 0
        self._rng = rng if rng is not None else random.Random()
        self._adaptive = adaptive
        self._sketch = FrequencySketch(hash_fn=hash_fn, doorkeeper=doorkeeper)
        self._increment = self._sketch.increment
        self._frequency = self._sketch.frequency
        # Keys moved from the window to probation by the last put: they duel for a place.
        self._candidates: deque[str] = deque()
        # Window entries already admitted as candidates in this round (None: not started,
        # -1: the window's candidate lost, stop looking there).
        self._window_skip: int | None = None
        self._last_weight = 0
        self._weigher = Weigher(None, None)
        self._weighted = False
        self._max: int | None = None
        self._window_max = self._protected_max = _UNBOUNDED
        self._hit_count = [0]  # hits in the current sample; a list, shared with the hit path
        self._misses = 0
        self._previous_rate = 0.0
        self._step = 0.0
        self._adjustment = 0
        self._blocked = False
        self._sample_reset = 0
        self.set_capacity(capacity_entries=capacity_entries, capacity_bytes=capacity_bytes)
        self.lookup: Callable[[str], bytes | None] = self._values.get
        """The value of a key, or None; nothing is recorded."""
        self.touch: Callable[[str], None] = self._make_touch()
        """Record a hit: count it in the sketch and reorder the key's region."""

    # -- sizing ----------------------------------------------------------------

    def set_capacity(self, *, capacity_entries: int | None, capacity_bytes: int | None) -> None:
        """Size the regions from the store's bounds; with none, they are learnt at the
        first eviction."""
        check_bounds(capacity_entries, capacity_bytes, len(self._values))
        self._weigher = Weigher(capacity_entries, capacity_bytes)
        self._weighted = capacity_bytes is not None
        self._set_maximum(self._weigher.capacity)

    def _set_maximum(self, maximum: int | None) -> None:
        self._max = maximum
        if maximum is None:
            self._window_max = self._protected_max = _UNBOUNDED
            return
        self._window_max = maximum - int(_PERCENT_MAIN * maximum)
        self._protected_max = int(_PERCENT_MAIN_PROTECTED * (maximum - self._window_max))
        if not self._weighted:
            self._sketch.sample_size = 10 * maximum
        self._hit_count[0] = self._misses = 0
        self._step = -_HILL_CLIMBER_STEP_PERCENT * maximum
        self._adjustment = 0
        self._previous_rate = 0.0

    @property
    def window_maximum(self) -> int:
        """The window's current share of the capacity, in weight units."""
        return self._window_max

    @property
    def protected_maximum(self) -> int:
        """The protected segment's current share of the capacity, in weight units."""
        return self._protected_max

    def frequency(self, key: str) -> int:
        """The sketch's estimate of how often ``key`` was seen recently."""
        return self._frequency(key)

    def region(self, key: str) -> str | None:
        """``"window"``, ``"probation"`` or ``"protected"``: where ``key`` is held, or None."""
        for name, region in (
            ("window", self._window),
            ("probation", self._probation),
            ("protected", self._protected),
        ):
            if key in region:
                return name
        return None

    # -- accesses --------------------------------------------------------------

    def _make_touch(self) -> Callable[[str], None]:
        """Build the hit path: one Python call, with the sketch's counter step inlined.

        It is :meth:`FrequencySketch.increment_seen` followed by the region update,
        fused into a closure over the tables (which never change identity: the sketch
        grows and halves its table in place) because a hit is the hottest path.
        """
        sketch = self._sketch
        table, hash_fn = sketch.table, sketch.hash_fn
        protected, window = self._protected, self._window
        hits = self._hit_count
        policy = self

        def touch(key: str) -> None:
            # Count the hit (FrequencySketch.increment_seen, inlined).
            h = hash_fn(key)
            mask = sketch.mask
            step = (h >> 40) | 1
            i = h & mask
            j = (i + step) & mask
            k = (j + step) & mask
            m = (k + step) & mask
            a, b, c, d = table[i], table[j], table[k], table[m]
            if a & b & c & d != 15:  # not all four saturated (counters are 0 to 15)
                if a < 15:
                    table[i] = a + 1
                if b < 15:
                    table[j] = b + 1
                if c < 15:
                    table[k] = c + 1
                if d < 15:
                    table[m] = d + 1
                sketch.count_added()
            hits[0] += 1
            # Reorder the key's region.
            if key in protected:
                protected.move_to_end(key)
            elif key in window:
                window.move_to_end(key)
            else:
                policy._promote(key)

        return touch

    def _promote(self, key: str) -> None:
        """A hit on probation: move the key to protected. If protected overflows, its
        oldest entries are demoted at the next maintenance (the next put), as in Caffeine."""
        probation = self._probation
        weight = probation.pop(key)
        if weight > self._protected_max:
            probation[key] = weight
            return
        self._wprobation -= weight
        self._protected[key] = weight
        self._wprotected += weight

    def put(self, key: str, value: bytes, cost: int) -> bytes | None:
        """Add a new key to the window (moving the window's overflow to probation as
        candidates), or replace a held key's value and count an access."""
        values = self._values
        weight = self._weigher.weight(cost)
        old = values.get(key)
        values[key] = value
        self._candidates.clear()
        self._window_skip = None
        self._last_weight = weight
        self._climb()
        if old is not None:
            self._reweigh(key, weight)
            self.touch(key)
        else:
            self._window[key] = weight
            self._wwindow += weight
            self._misses += 1
            sketch = self._sketch
            if len(values) > sketch.capacity:
                # The sketch grows with the cache (keeping its counts): 16 counters per entry.
                sketch.ensure_capacity(len(values))
                if self._weighted:
                    sketch.sample_size = 10 * len(values)
            self._increment(key)
        self._evict_from_window()
        return old

    def _reweigh(self, key: str, weight: int) -> None:
        for region in (self._window, self._probation, self._protected):
            old = region.get(key)
            if old is not None:
                region[key] = weight
                self._add_weight(region, weight - old)
                return

    def _add_weight(self, region: OrderedDict[str, int], delta: int) -> None:
        if region is self._window:
            self._wwindow += delta
        elif region is self._probation:
            self._wprobation += delta
        else:
            self._wprotected += delta

    def _evict_from_window(self) -> None:
        """Move the window's least recent entries to probation until it fits its share."""
        window, probation = self._window, self._probation
        while self._wwindow > self._window_max and window:
            key, weight = window.popitem(last=False)
            self._wwindow -= weight
            probation[key] = weight
            self._wprobation += weight
            self._candidates.append(key)

    # -- removals --------------------------------------------------------------

    def remove(self, key: str) -> bytes | None:
        """Remove ``key`` and return its value, or None."""
        value = self._values.pop(key, None)
        if value is None:
            return None
        self._drop(key)
        return value

    def _drop(self, key: str) -> int:
        """Take held ``key`` out of its region; return its weight."""
        for region in (self._probation, self._protected, self._window):
            weight = region.pop(key, None)
            if weight is not None:
                self._add_weight(region, -weight)
                return weight
        raise AssertionError(f"{key!r} is in no region")  # pragma: no cover

    def evict(self) -> tuple[str, bytes]:
        """Run one duel between the next candidate and the victim; return the loser."""
        values = self._values
        if not values:
            raise KeyError("TinyLFUPolicy is empty")
        if self._max is None:
            # No bound was given: the store is full now, so what it held before the last
            # put is the capacity.
            total = self._wwindow + self._wprobation + self._wprotected
            self._set_maximum(max(1, total - self._last_weight))
            self._evict_from_window()
        key = self._choose_victim()
        self._drop(key)
        return key, values.pop(key)

    def _choose_victim(self) -> str:
        probation, window = self._probation, self._window
        candidates = self._candidates
        # Candidates promoted or removed since they left the window are no longer candidates.
        while candidates and candidates[0] not in probation:
            candidates.popleft()
        candidate: str | None = None
        from_window = False
        if candidates:
            candidate = candidates[0]
        elif self._window_skip != -1:
            # No candidate from this round: the window's oldest entries duel too (Caffeine).
            skip = self._window_skip or 0
            candidate = next(islice(window, skip, None), None)
            from_window = candidate is not None
        victim = next(iter(probation), None)
        if victim is None:
            if candidate is not None:
                self._advance(from_window, admitted=False)
                return candidate
            victim = next(iter(self._protected), None)
            if victim is None:
                victim = next(iter(window))  # the policy holds something
            return victim
        if candidate is None:
            return victim
        if candidate == victim:
            self._advance(from_window, admitted=False)
            return candidate
        weight = (window if from_window else probation)[candidate]
        assert self._max is not None
        if weight > self._max or not self._admit(candidate, victim):
            self._advance(from_window, admitted=False)
            return candidate
        self._advance(from_window, admitted=True)
        return victim

    def _advance(self, from_window: bool, *, admitted: bool) -> None:
        """Move past the candidate that just duelled."""
        if from_window:
            self._window_skip = (self._window_skip or 0) + 1 if admitted else -1
        elif admitted:
            self._candidates.popleft()

    def _admit(self, candidate: str, victim: str) -> bool:
        """Whether ``candidate`` should replace ``victim``: the more frequent one wins."""
        victim_freq = self._frequency(victim)
        candidate_freq = self._frequency(candidate)
        if candidate_freq > victim_freq:
            return True
        if candidate_freq >= _ADMIT_HASHDOS_THRESHOLD:
            # A warm candidate lost: admit it anyway, rarely, so that an attacker who
            # makes the victim look hot cannot keep every newcomer out (Caffeine).
            return self._rng.getrandbits(7) == 0
        return False

    # -- hill climbing (Caffeine's BoundedLocalCache.climb) --------------------

    def _climb(self) -> None:
        if self._max is None:
            return
        if self._adaptive and self._hit_count[0] + self._misses >= self._sketch.sample_size:
            self._determine_adjustment()
        self._demote_from_protected()
        amount = self._adjustment
        before = self._window_max
        if amount > 0:
            self._increase_window()
        elif amount < 0:
            self._decrease_window()
        # A move the bounds refused (window at 1, or protected at 0) leaves the next
        # sample's change of hit rate to the workload alone: see _determine_adjustment.
        self._blocked = amount != 0 and self._window_max == before

    def _determine_adjustment(self) -> None:
        hits = self._hit_count[0]
        requests = hits + self._misses
        sketch = self._sketch
        if requests < sketch.sample_size or sketch.resets == self._sample_reset:
            return
        # A sample ends at a halving of the sketch, so that every sample spans whole
        # periods of the sketch's aging: admission runs a sawtooth over each period
        # (counts are halved, then build up), and samples cut across it at random
        # points differ by more than the window size makes them (by 5 to 10 points
        # on a loop), which sends the climber the wrong way.
        self._sample_reset = sketch.resets
        assert self._max is not None
        rate = hits / requests
        change = rate - self._previous_rate
        if change >= 0 or (self._blocked and -change < _HILL_CLIMBER_RESTART_THRESHOLD):
            # Keep going while the hit rate does not fall. Pressed against a bound, the
            # climber did not move, so a small fall is the workload's noise, not the
            # step's fault: turning round on it makes the window wander off its best
            # size (on a loop, the 1-entry window) and back.
            amount = self._step
        else:
            amount = -self._step
        if abs(change) >= _HILL_CLIMBER_RESTART_THRESHOLD:
            step = _HILL_CLIMBER_STEP_PERCENT * self._max * (1 if amount >= 0 else -1)
        else:
            step = _HILL_CLIMBER_STEP_DECAY_RATE * amount
        self._previous_rate = rate
        self._adjustment = int(amount)
        self._step = step
        self._hit_count[0] = self._misses = 0

    def _demote_from_protected(self) -> None:
        if self._wprotected <= self._protected_max:
            return
        protected, probation = self._protected, self._probation
        for _ in range(_QUEUE_TRANSFER_THRESHOLD):
            if self._wprotected <= self._protected_max or not protected:
                return
            key, weight = protected.popitem(last=False)
            self._wprotected -= weight
            probation[key] = weight
            self._wprobation += weight

    def _increase_window(self) -> None:
        if self._protected_max == 0:
            return
        quota = min(self._adjustment, self._protected_max)
        self._protected_max -= quota
        self._window_max += quota
        self._demote_from_protected()
        probation, protected, window = self._probation, self._protected, self._window
        for _ in range(_QUEUE_TRANSFER_THRESHOLD):
            key = next(iter(probation), None)
            source = probation
            if key is None or quota < probation[key]:
                key = next(iter(protected), None)
                source = protected
            if key is None:
                break
            weight = source[key]
            if quota < weight:
                break
            quota -= weight
            del source[key]
            self._add_weight(source, -weight)
            window[key] = weight
            self._wwindow += weight
        self._protected_max += quota
        self._window_max -= quota
        self._adjustment = quota

    def _decrease_window(self) -> None:
        if self._window_max <= 1:
            return
        quota = min(-self._adjustment, max(0, self._window_max - 1))
        self._protected_max += quota
        self._window_max -= quota
        window, probation = self._window, self._probation
        for _ in range(_QUEUE_TRANSFER_THRESHOLD):
            key = next(iter(window), None)
            if key is None:
                break
            weight = window[key]
            if quota < weight:
                break
            quota -= weight
            del window[key]
            self._wwindow -= weight
            probation[key] = weight
            self._wprobation += weight
        self._protected_max -= quota
        self._window_max += quota
        self._adjustment = -quota

    # -- the rest of the protocol ----------------------------------------------

    def clear(self) -> None:
        """Remove every entry; the sketch and the region sizes are kept."""
        for region in (self._values, self._window, self._probation, self._protected):
            region.clear()
        self._wwindow = self._wprobation = self._wprotected = 0
        self._candidates.clear()
        self._window_skip = None

    def keys(self) -> Iterator[str]:
        """Iterate over held keys: window, probation, protected, each least recent first."""
        return iter(list(chain(self._window, self._probation, self._protected)))

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def _check(self) -> None:
        """Assert the internal invariants (for tests)."""
        regions = (self._window, self._probation, self._protected)
        held = [set(r) for r in regions]
        assert sum(map(len, held)) == len(set().union(*held)) == len(self._values)
        assert set().union(*held) == set(self._values)
        for region, weight in zip(
            regions, (self._wwindow, self._wprobation, self._wprotected), strict=True
        ):
            assert sum(region.values()) == weight
        if self._max is not None:
            assert 0 <= self._window_max <= self._max
            assert 0 <= self._protected_max <= self._max
            assert self._window_max + self._protected_max <= self._max
