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
with periodic halving; Caffeine's cache has no doorkeeper, and neither has this
one unless asked) that sees every access, hit or miss, so a key's popularity is
remembered after it leaves the cache.

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

And one of shoal's own, **modes**: no fixed policy is best on every workload
(where recency rules, LRU or ARC beat W-TinyLFU by several points, and the hill
climber, one step per sample of 10 requests per entry, is too slow to grow the
window that far). Three *miniature caches* (Waldspurger et al., "Cache Modeling
and Optimization using Miniature Simulations", USENIX ATC '17) replay the
requests of a hash-chosen sample of the keys: an LRU, an ARC and a W-TinyLFU,
each holding the capacity times the sampling rate (128 to 255 entries; a
cache below 256 entries is replayed whole). Every 4 sampled requests per
miniature entry their hit counts join a moving average (each period weighs
0.875 of the one before; the first two periods only warm them up), and when
another miniature leads the current mode's by more than half a point of hit
ratio the policy switches, keeping every entry: ``"lru"`` makes the window the
whole cache (W-TinyLFU degenerates to LRU), ``"arc"`` hands the entries to an
:class:`~shoal.policy.arc.ARCPolicy` sharing the value map (T1: window and
probation, T2: protected), ``"tinylfu"`` starts again from Caffeine's initial
split. The sketch counts every access in every mode. The hit path only tests the
sampling bits of the hash it computes anyway.

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

from .._native import load_speedups
from ._sketch import FrequencySketch
from ._weight import Weigher, check_bounds
from .arc import ARCPolicy
from .lru import LRUPolicy

__all__ = ["TinyLFUPolicy"]

# Caffeine's constants (com.github.benmanes.caffeine.cache.BoundedLocalCache, 3.x):
# PERCENT_MAIN, PERCENT_MAIN_PROTECTED: the initial split, 1% window, 80% of main protected.
_PERCENT_MAIN = 0.99
_PERCENT_MAIN_PROTECTED = 0.80
# HILL_CLIMBER_RESTART_THRESHOLD: a change of hit rate this large restarts the step size.
_HILL_CLIMBER_RESTART_THRESHOLD = 0.05
# HILL_CLIMBER_STEP_PERCENT: the step, as a share of the capacity (initially a shrink).
_HILL_CLIMBER_STEP_PERCENT = 0.0625
# HILL_CLIMBER_STEP_DECAY_RATE: the step shrinks by this factor at every sample.
_HILL_CLIMBER_STEP_DECAY_RATE = 0.98
# QUEUE_TRANSFER_THRESHOLD: at most this many entries move between regions per maintenance.
_QUEUE_TRANSFER_THRESHOLD = 1000
# ADMIT_HASHDOS_THRESHOLD: a losing candidate this warm is admitted 1 time in 128
# (BoundedLocalCache.admit: ``(random & 127) == 0``).
_ADMIT_HASHDOS_THRESHOLD = 6
# The climber's sample: FrequencySketch.sampleSize, 10 requests per entry of the capacity.
_SAMPLE_PER_ENTRY = 10
_UNBOUNDED = sys.maxsize
# The compiled hit path, unless shoal was built without it or SHOAL_NO_SPEEDUPS is set.
_SPEEDUPS = load_speedups()

# Modes (shoal's, not Caffeine's): three miniature caches, an LRU, an ARC and a W-TinyLFU,
# replay a hash-chosen sample of the keys (1 key in 2**k, k such that a miniature holds
# 128 to 255 entries; every key in caches below 256 entries) and the policy runs as
# whichever did best: W-TinyLFU (at first), LRU (the window is the whole cache) or ARC.
_MINI_ENTRIES = 128
# The miniatures are compared every this many sampled requests per entry they hold; the
# verdict is a moving average of the comparisons, each weighing _MINI_DECAY of the last.
_MINI_PERIOD_PER_ENTRY = 4
_MINI_DECAY = 0.875
# The first periods only fill the miniatures: their hit ratios are not compared yet.
_MINI_WARMUP = 2
# The mode changes when another miniature's hit ratio leads the current mode's by this
# much (a fraction): below that, a change would cost more than it could win.
_MINI_MARGIN = 0.005
# The modes, in the order of the miniatures that stand for them.
_MODES = ("lru", "arc", "tinylfu")
_MIX = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


class TinyLFUPolicy:
    """W-TinyLFU: window LRU, segmented-LRU main space, frequency-sketch admission.

    Args:
        capacity_entries: the store's entry bound (or give it later to :meth:`set_capacity`).
        capacity_bytes: the store's byte bound.
        rng: randomness for the hash-flooding defence; default: seeded from the system.
        hash_fn: the sketch's hash (default ``hash``); inject a fixed one for
            results that repeat from one process to the next.
        adaptive: run the hill climber and the modes (default True); False keeps the
            window at 1%.
        recency: choose the mode by miniature caches (default True; needs ``adaptive``).
        doorkeeper: put a Bloom filter in front of the sketch (default False, as in
            Caffeine's cache).
        native: use the compiled hit path of ``shoal._speedups`` when it is built
            (default True; the same results as the Python one).

    ``lookup`` is a C ``dict.get``; ``touch`` counts the access in the sketch and
    moves the key within its region (from probation to protected). A replace
    counts as an access.
    """

    __slots__ = (
        "_adaptive",
        "_adjustment",
        "_arc",
        "_blocked",
        "_bounds",
        "_candidates",
        "_frequency",
        "_hash_fn",
        "_hit_count",
        "_increment",
        "_last_weight",
        "_max",
        "_mini_hits",
        "_mini_key_weights",
        "_mini_max",
        "_mini_period",
        "_mini_periods",
        "_mini_requests",
        "_mini_scores",
        "_mini_seen",
        "_mini_weights",
        "_minis",
        "_misses",
        "_mode",
        "_native",
        "_previous_rate",
        "_probation",
        "_protected",
        "_protected_max",
        "_recency",
        "_rng",
        "_sample_reset",
        "_sampling",
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
        recency: bool = True,
        doorkeeper: bool = False,
        native: bool = True,
    ) -> None:
        self._values: dict[str, bytes] = {}
        # key -> weight, least recently used first.
        self._window: OrderedDict[str, int] = OrderedDict()
        self._probation: OrderedDict[str, int] = OrderedDict()
        self._protected: OrderedDict[str, int] = OrderedDict()
        self._wwindow = self._wprobation = self._wprotected = 0
        self._rng = rng if rng is not None else random.Random()
        self._adaptive = adaptive
        self._recency = adaptive and recency
        self._hash_fn = hash_fn
        self._native = native
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
        self._bounds: tuple[int | None, int | None] = (None, None)
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
        # The mode, the miniature caches and their tally (see _simulate).
        self._mode = "tinylfu"
        self._arc: ARCPolicy | None = None
        self._minis: tuple[LRUPolicy | ARCPolicy | TinyLFUPolicy, ...] = ()
        self._mini_weights = [0, 0, 0]
        self._mini_hits = [0, 0, 0]
        self._mini_scores = [0.0, 0.0, 0.0]
        self._mini_seen = 0.0
        self._mini_key_weights: tuple[dict[str, int], ...] = ({}, {}, {})
        # [mask, target]: a key whose hash bits 24 and up, under mask, equal target is
        # replayed by the miniatures; target 1 under mask 0 samples nothing.
        self._sampling = [0, 1]
        self._mini_max = 0
        self._mini_requests = self._mini_periods = 0
        self._mini_period = 0
        self.set_capacity(capacity_entries=capacity_entries, capacity_bytes=capacity_bytes)
        self.lookup: Callable[[str], bytes | None] = self._values.get
        """The value of a key, or None; nothing is recorded."""
        self.touch: Callable[[str], None] = self._make_touch()
        """Record a hit: count it in the sketch and reorder the key's region."""
        if (
            not doorkeeper
            and _SPEEDUPS is not None
            and isinstance(self.touch, _SPEEDUPS.SketchTouch)
        ):
            # The miss path's sketch steps, compiled too (the same counts as the sketch's).
            self._increment = self.touch.increment
            self._frequency = self.touch.frequency

    # -- sizing ----------------------------------------------------------------

    def set_capacity(self, *, capacity_entries: int | None, capacity_bytes: int | None) -> None:
        """Size the regions from the store's bounds; with none, they are learnt at the
        first eviction."""
        check_bounds(capacity_entries, capacity_bytes, len(self._values))
        self._weigher = Weigher(capacity_entries, capacity_bytes)
        self._bounds = (capacity_entries, capacity_bytes)
        self._weighted = capacity_bytes is not None
        self._set_maximum(self._weigher.capacity)

    def _set_maximum(self, maximum: int | None) -> None:
        self._max = maximum
        self._mode = "tinylfu"
        self._arc = None
        if maximum is None:
            self._window_max = self._protected_max = _UNBOUNDED
            self._sampling[:] = [0, 1]
            return
        if not self._weighted:
            self._sketch.sample_size = _SAMPLE_PER_ENTRY * maximum
        self._restart_climber()
        self._minis = ()
        self._sampling[:] = [0, 1]
        if self._recency and not self._weighted:
            self._start_miniatures(maximum)

    def _restart_climber(self) -> None:
        """Caffeine's initial state: a 1% window, 80% of main protected, a shrinking step."""
        maximum = self._max
        assert maximum is not None
        self._window_max = maximum - int(_PERCENT_MAIN * maximum)
        self._protected_max = int(_PERCENT_MAIN_PROTECTED * (maximum - self._window_max))
        self._hit_count[0] = self._misses = 0
        self._step = -_HILL_CLIMBER_STEP_PERCENT * maximum
        self._adjustment = 0
        self._previous_rate = 0.0

    # -- modes: miniature caches choose between W-TinyLFU, LRU and ARC ------------

    def _start_miniatures(self, entries: int) -> None:
        """Size the miniature caches for a cache of about ``entries`` entries and start
        sampling: 1 key in ``2**k``, so that a miniature holds 128 to 255 entries."""
        assert self._max is not None
        shift = max(0, (entries // _MINI_ENTRIES).bit_length() - 1)
        self._mini_max = limit = max(1, self._max >> shift)
        hash_fn = self._hash_fn

        def mixed(key: str) -> int:
            # The sampled keys share their hash bits 24 and up: the miniature's sketch
            # needs others.
            h = hash_fn(key)
            return ((h ^ (h >> 29)) * _MIX) & _MASK64

        entries_bound, bytes_bound = (None, limit) if self._weighted else (limit, None)
        self._minis = (
            LRUPolicy(),
            ARCPolicy(capacity_entries=entries_bound, capacity_bytes=bytes_bound),
            TinyLFUPolicy(
                rng=random.Random(self._rng.getrandbits(64)),
                hash_fn=mixed,
                recency=False,
                capacity_entries=entries_bound,
                capacity_bytes=bytes_bound,
            ),
        )
        self._mini_weights = [0, 0, 0]
        self._mini_hits = [0, 0, 0]
        self._mini_scores = [0.0, 0.0, 0.0]
        self._mini_requests = self._mini_periods = 0
        self._mini_seen = 0.0
        for held in self._mini_key_weights:
            held.clear()
        self._mini_period = max(1, _MINI_PERIOD_PER_ENTRY * (entries >> shift))
        self._sampling[:] = [(1 << shift) - 1, 0]

    def _simulate(self, key: str, weight: int | None) -> None:
        """Replay one request of a sampled key through the miniatures (``weight`` None:
        a hit, the key is held)."""
        if not self._weighted:
            # Every weight is 1: a miniature over its bound holds one entry too many.
            limit, hits = self._mini_max, self._mini_hits
            for i, mini in enumerate(self._minis):
                if mini.lookup(key) is not None:
                    mini.touch(key)
                    hits[i] += 1
                else:
                    mini.put(key, b"", 1)
                    if len(mini) > limit:
                        mini.evict()
            self._mini_requests += 1
            if self._mini_requests >= self._mini_period:
                self._decide()
            return
        if weight is None:
            if self._arc is not None:
                weight = self._mini_key_weights[2].get(key) or self._mini_key_weights[0].get(key, 1)
            else:
                weight = (
                    self._window.get(key)
                    or self._probation.get(key)
                    or self._protected.get(key)
                    or 1
                )
        limit = self._mini_max
        hits, weights = self._mini_hits, self._mini_weights
        # With a byte bound, each miniature's weights by key.
        key_weights = self._mini_key_weights
        for i, mini in enumerate(self._minis):
            if mini.lookup(key) is not None:
                mini.touch(key)
                hits[i] += 1
                continue
            mini.put(key, b"", weight)
            weights[i] += weight
            held = key_weights[i]
            held[key] = weight
            while weights[i] > limit:
                gone, _ = mini.evict()
                weights[i] -= held.pop(gone)
        self._mini_requests += 1
        if self._mini_requests >= self._mini_period:
            self._decide()

    def _decide(self) -> None:
        """Compare the miniatures' hit ratios (moving averages); switch to the best on a
        clear lead over the current mode."""
        decay = _MINI_DECAY
        scores, hits = self._mini_scores, self._mini_hits
        self._mini_periods += 1
        if self._mini_periods <= _MINI_WARMUP:
            # The miniatures are still filling: their hit ratios say little yet.
            hits[:] = [0, 0, 0]
            self._mini_requests = 0
            return
        for i in range(3):
            scores[i] = decay * scores[i] + hits[i]
            hits[i] = 0
        self._mini_seen = decay * self._mini_seen + self._mini_requests
        self._mini_requests = 0
        best = max(range(3), key=scores.__getitem__)
        current = _MODES.index(self._mode)
        if best != current and scores[best] - scores[current] > _MINI_MARGIN * self._mini_seen:
            self._switch(_MODES[best])

    def _switch(self, mode: str) -> None:
        """Run as ``mode`` from now on, keeping every entry."""
        assert self._max is not None
        arc = self._arc
        if arc is not None:
            recent, frequent = arc.lists()
            self._arc = None
        else:
            recent = [*self._window.items(), *self._probation.items()]
            frequent = list(self._protected.items())
        for region in (self._window, self._probation, self._protected):
            region.clear()  # the same objects: the hit path holds them
        self._wwindow = self._wprobation = self._wprotected = 0
        self._candidates.clear()
        self._window_skip = None
        self._adjustment = 0
        self._mode = mode
        if mode == "arc":
            # ARC weighs entries as this policy does: the same bounds.
            entries_bound, bytes_bound = self._bounds
            if entries_bound is None and bytes_bound is None:
                entries_bound = self._max  # learnt at the first eviction
            self._arc = ARCPolicy(
                capacity_entries=entries_bound,
                capacity_bytes=bytes_bound,
                values=self._values,
                recent=recent,
                frequent=frequent,
            )
            return
        if mode == "lru":
            # The window is the whole cache: W-TinyLFU degenerates to LRU.
            self._window.update(recent)
            self._window.update(frequent)
            self._wwindow = sum(self._window.values())
            self._window_max = self._max
            self._protected_max = 0
            return
        self._restart_climber()
        self._probation.update(recent)
        self._probation.update(frequent)
        self._wprobation = sum(self._probation.values())
        self._evict_from_window(candidates=False)

    @property
    def mode(self) -> str:
        """How the policy runs now: ``"tinylfu"``, ``"lru"`` (its window is the whole
        cache) or ``"arc"``."""
        return self._mode

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
        """Build the hit path: one call, with the sketch's counter step inlined.

        It is :meth:`FrequencySketch.increment_seen`, the sampling test of the
        miniatures and the region update, fused into one call over the tables (which
        never change identity: the sketch grows and halves its table in place)
        because a hit is the hottest path: the compiled ``SketchTouch`` when
        ``shoal._speedups`` is there (and ``native``), else a Python closure doing
        the same steps.
        """
        sketch = self._sketch
        table, hash_fn = sketch.table, sketch.hash_fn
        protected, window = self._protected, self._window
        hits = self._hit_count
        sampling = self._sampling
        if self._native and _SPEEDUPS is not None:
            # The same steps, compiled (shoal._speedups.SketchTouch).
            touch_type: Callable[..., Callable[[str], None]] = _SPEEDUPS.SketchTouch
            return touch_type(
                table,
                hash_fn,
                sketch.counts,
                sketch.reset,
                protected,
                window,
                self._promote,
                self._simulate,
                hits,
                sampling,
            )
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
            if (h >> 24) & sampling[0] == sampling[1]:
                policy._simulate(key, None)
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
        arc = self._arc
        if arc is not None:  # ARC mode: the regions are empty, ARC has the key
            arc.touch(key)
            return
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
        arc = self._arc
        if arc is not None:
            return self._put_arc(arc, key, value, cost)
        values = self._values
        weight = 1 if not self._weighted else self._weigher.weight(cost)
        old = values.get(key)
        values[key] = value
        self._candidates.clear()
        self._window_skip = None
        self._last_weight = weight
        if (
            self._adjustment
            or self._blocked
            or self._wprotected > self._protected_max
            or self._hit_count[0] + self._misses >= self._sketch.counts[1]
        ):
            # Only then has the climber something to do (most puts: nothing).
            self._climb()
        if old is not None:
            self._reweigh(key, weight)
            self.touch(key)
        else:
            self._window[key] = weight
            self._wwindow += weight
            self._misses += 1
            sketch = self._sketch
            if len(values) > len(sketch.table) >> 4:  # sketch.capacity, without the call
                # The sketch grows with the cache (keeping its counts): 16 counters per entry.
                sketch.ensure_capacity(len(values))
                if self._weighted:
                    sketch.sample_size = 10 * len(values)
            self._increment(key)
            sampling = self._sampling
            if (self._hash_fn(key) >> 24) & sampling[0] == sampling[1]:
                self._simulate(key, weight)
        if self._wwindow > self._window_max:
            # The window's oldest entry moves to probation as a candidate
            # (_evict_from_window's first step, without the call: mostly the only one).
            moved, moved_weight = self._window.popitem(last=False)
            self._wwindow -= moved_weight
            self._probation[moved] = moved_weight
            self._wprobation += moved_weight
            self._candidates.append(moved)
            if self._wwindow > self._window_max:
                self._evict_from_window()
        return old

    def _put_arc(self, arc: ARCPolicy, key: str, value: bytes, cost: int) -> bytes | None:
        """A put in ARC mode: counted in the sketch and the miniatures, placed by ARC."""
        old = arc.put(key, value, cost)
        if old is not None:
            self._increment(key)
        else:
            self._misses += 1
            self._increment(key)
        sampling = self._sampling
        if (self._hash_fn(key) >> 24) & sampling[0] == sampling[1]:
            self._simulate(key, self._weigher.weight(cost))
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

    def _evict_from_window(self, *, candidates: bool = True) -> None:
        """Move the window's least recent entries to probation until it fits its share
        (as candidates for a duel, unless ``candidates`` is False)."""
        window, probation = self._window, self._probation
        while self._wwindow > self._window_max and window:
            key, weight = window.popitem(last=False)
            self._wwindow -= weight
            probation[key] = weight
            self._wprobation += weight
            if candidates:
                self._candidates.append(key)

    # -- removals --------------------------------------------------------------

    def remove(self, key: str) -> bytes | None:
        """Remove ``key`` and return its value, or None."""
        if self._arc is not None:
            return self._arc.remove(key)
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
        if self._recency and not self._minis:
            # A byte bound: the entries held when the store first fills size the sample.
            self._start_miniatures(len(values))
        if self._arc is not None:
            return self._arc.evict()
        key = self._choose_victim()
        # Most losers are on probation: _drop's first case, without the call.
        weight = self._probation.pop(key, None)
        if weight is None:
            self._drop(key)
        else:
            self._wprobation -= weight
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
        if from_window:
            self._advance(from_window, admitted=True)
        else:  # _advance's common case, without the call
            candidates.popleft()
        return victim

    def _advance(self, from_window: bool, *, admitted: bool) -> None:
        """Move past the candidate that just duelled."""
        if from_window:
            self._window_skip = (self._window_skip or 0) + 1 if admitted else -1
        elif admitted:
            self._candidates.popleft()

    def _admit(self, candidate: str, victim: str) -> bool:
        """Whether ``candidate`` should replace ``victim``: the more frequent one wins."""
        frequency = self._frequency
        victim_freq = frequency(victim)
        candidate_freq = frequency(candidate)
        if candidate_freq > victim_freq:
            return True
        if candidate_freq >= _ADMIT_HASHDOS_THRESHOLD:
            # A warm candidate lost: admit it anyway, rarely, so that an attacker who
            # makes the victim look hot cannot keep every newcomer out (Caffeine).
            return self._rng.getrandbits(7) == 0
        return False

    # -- hill climbing (Caffeine's BoundedLocalCache.climb) --------------------

    def _climb(self) -> None:
        """Caffeine's ``climb``: adjust the window after a full sample, then move entries."""
        if self._max is None or self._mode != "tinylfu":
            return
        if self._adaptive and self._hit_count[0] + self._misses >= self._sketch.counts[1]:
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
        """Caffeine's ``determineAdjustment``: keep the direction while the hit rate does
        not fall, turn round when it does; a sharp change restarts the step size.

        Two departures from Caffeine: a sample ends at a halving of the sketch, and a
        climber pressed against a bound does not turn round on a small fall of the hit
        rate. With them, the LIRS cells of the reference grid (bench/policy_reference.py)
        miss the theine target 8 times instead of 10, and the LIRS loop at 512 entries
        gets 48.86% instead of 45.69%.
        """
        hits = self._hit_count[0]
        requests = hits + self._misses
        sketch = self._sketch
        if sketch.resets == self._sample_reset:
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
            # Pressed against a bound, the climber did not move, so a small fall is the
            # workload's noise, not the step's fault: turning round on it makes the
            # window wander off its best size (on a loop, the 1-entry window) and back.
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
        """Remove every entry; the sketch, the mode and the region sizes are kept."""
        if self._arc is not None:
            self._arc.clear()
        for region in (self._values, self._window, self._probation, self._protected):
            region.clear()
        self._wwindow = self._wprobation = self._wprotected = 0
        self._candidates.clear()
        self._window_skip = None

    def keys(self) -> Iterator[str]:
        """Iterate over held keys: window, probation, protected, each least recent first
        (in ARC mode: T1, then T2)."""
        if self._arc is not None:
            return self._arc.keys()
        return iter(list(chain(self._window, self._probation, self._protected)))

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def _check(self) -> None:
        """Assert the internal invariants (for tests)."""
        if self._arc is not None:
            recent, frequent = self._arc.lists()
            assert {k for k, _ in chain(recent, frequent)} == set(self._values)
            assert not (self._window)
            assert not (self._probation)
            assert not (self._protected)
            return
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
