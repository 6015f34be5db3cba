"""Eviction policy cost: what a hit and a miss cost in a store under each policy, against LRU.

Each policy (``lru``, ``lfu``, ``fifo``, ``arc``, ``tinylfu``) gets a
``Store(capacity_entries=10,000)`` filled with 10,000 keys of 100-byte values,
and three timed operations:

* **hit**: ``store.get(key)`` over a random order of the held keys (every get
  a hit: the policy's ``lookup`` and ``touch`` under the store's lock); as in
  ``local_hits.py``, the keys looked up are equal strings but not the objects
  stored, as keys parsed from requests would be;
* **miss + admit**: ``store.set(key, value)`` of keys never seen before, on the
  full store (the policy's ``put`` and one ``evict``; a W-TinyLFU duel);
* **mixed**: a read-through replay of a skewed (Zipf-like) stream over 50,000
  keys through a store of 2,000 entries, ``get`` then ``set`` on a miss, as a
  cache in front of a database sees it: the cost per request, hits and misses
  together; the table also shows each policy's hit ratio on it.

Every round times each (policy, operation) once, in a rotating order, with the
garbage collector off. Ratios are the median over rounds of the ratio to LRU
within the round, which a burst of load from other processes slows alike.
The targets: a hit in any policy costs at most 3x an LRU hit; a W-TinyLFU hit at
most 1.5x an LRU hit and a W-TinyLFU miss + admit at most 2.5x LRU's.

Run: ``python bench/policies.py [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from _common import BenchError, environment, markdown_table, median, run
from shoal import Store
from shoal.policy import POLICY_NAMES

KEYS = 10_000
VALUE = b"v" * 100
MIXED_KEYS = 50_000
MIXED_CAPACITY = 2_000
MIXED_REQUESTS = 20_000
OPERATIONS = ("hit", "miss + admit", "mixed")


@dataclass
class Timing:
    """The samples (ns per operation) of one policy and operation."""

    policy: str
    operation: str
    run: Callable[[], float]
    samples: list[float] = field(default_factory=list)


def hit_runner(policy: str, held: list[str], order: list[str]) -> tuple[Callable[[], float], Store]:
    """Time ``store.get`` over ``order``, every key held (stored as the ``held`` objects)."""
    store = Store(capacity_entries=KEYS, policy=policy)
    for key in held:
        store.set(key, VALUE)
    get = store.get

    def run() -> float:
        start = time.perf_counter_ns()
        for key in order:
            get(key)
        return (time.perf_counter_ns() - start) / len(order)

    return run, store


def miss_runner(policy: str, batches: list[list[str]]) -> tuple[Callable[[], float], Store]:
    """Time ``store.set`` of new keys on a full store, a fresh batch of keys per round."""
    store = Store(capacity_entries=KEYS, policy=policy)
    for i in range(KEYS):
        store.set(f"warm:{i:08d}", VALUE)
    set_ = store.set
    pending = iter(batches)

    def run() -> float:
        batch = next(pending)
        start = time.perf_counter_ns()
        for key in batch:
            set_(key, VALUE)
        return (time.perf_counter_ns() - start) / len(batch)

    return run, store


def mixed_runner(policy: str, stream: list[str]) -> tuple[Callable[[], float], list[float]]:
    """Time a read-through replay of ``stream``; the hit ratios land in the list returned."""
    store = Store(capacity_entries=MIXED_CAPACITY, policy=policy)
    get, set_ = store.get, store.set
    ratios: list[float] = []

    def run() -> float:
        misses = 0
        start = time.perf_counter_ns()
        for key in stream:
            if get(key) is None:
                set_(key, VALUE)
                misses += 1
        elapsed = time.perf_counter_ns() - start
        ratios.append(100.0 * (len(stream) - misses) / len(stream))
        return elapsed / len(stream)

    return run, ratios


def zipf_stream(n: int, keys: int, seed: int) -> list[str]:
    """``n`` requests over ``keys`` keys, the i-th most popular with weight 1/i (s = 1)."""
    rng = random.Random(seed)
    names = [f"z:{i:08d}" for i in range(keys)]
    weights = [1.0 / (i + 1) for i in range(keys)]
    return rng.choices(names, weights=weights, k=n)


def check(condition: bool, message: str) -> None:
    """Raise :class:`BenchError` unless ``condition`` holds."""
    if not condition:
        raise BenchError(message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short run (8 rounds)")
    parser.add_argument("--rounds", type=int, help="rounds (default 40, or 8 with --quick)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the key orders")
    args = parser.parse_args(argv)
    rounds = args.rounds or (8 if args.quick else 40)
    rng = random.Random(args.seed)

    held = [f"key:{i:08d}" for i in range(KEYS)]
    order = ["".join(("key:", k[4:])) for k in held]  # equal strings, distinct objects
    rng.shuffle(order)
    stream = zipf_stream(MIXED_REQUESTS, MIXED_KEYS, args.seed)

    timings: list[Timing] = []
    stores: dict[tuple[str, str], Store] = {}
    mixed_ratios: dict[str, list[float]] = {}
    for policy in POLICY_NAMES:
        run, stores[policy, "hit"] = hit_runner(policy, held, order)
        timings.append(Timing(policy, "hit", run))
        batches = [[f"new:{r}:{i:08d}" for i in range(KEYS // 2)] for r in range(rounds)]
        run, stores[policy, "miss"] = miss_runner(policy, batches)
        timings.append(Timing(policy, "miss + admit", run))
        run, mixed_ratios[policy] = mixed_runner(policy, stream)
        timings.append(Timing(policy, "mixed", run))

    gc.collect()
    for r in range(rounds):
        shift = r % len(timings)
        for timing in timings[shift:] + timings[:shift]:
            gc.disable()
            try:
                timing.samples.append(timing.run())
            finally:
                gc.enable()

    # Every timed get must have hit; every store must have held to its bound.
    for policy in POLICY_NAMES:
        stats = stores[policy, "hit"].statistics()
        check(
            stats.hits == stats.gets == rounds * KEYS,
            f"{policy}: a hit-path get missed: {stats}",
        )
        miss = stores[policy, "miss"]
        check(len(miss) == KEYS, f"{policy}: the full store holds {len(miss)} entries")
        check(
            miss.statistics().evictions == rounds * (KEYS // 2),
            f"{policy}: not one eviction per new key",
        )

    by_key = {(t.policy, t.operation): t for t in timings}

    def ratio(policy: str, operation: str) -> float:
        mine, lru = by_key[policy, operation], by_key["lru", operation]
        return median([a / b for a, b in zip(mine.samples, lru.samples, strict=True)])

    rows = []
    for policy in POLICY_NAMES:
        row: list[object] = [policy]
        for operation in OPERATIONS:
            t = by_key[policy, operation]
            row.append(f"{median(t.samples):.0f}")
            row.append("1.00x" if policy == "lru" else f"{ratio(policy, operation):.2f}x")
        row.append(f"{median(mixed_ratios[policy]):.1f}")
        rows.append(row)
    print(
        f"Policy cost in a Store of {KEYS:,} entries ({len(VALUE)}-byte values), "
        f"{rounds} interleaved rounds (ns per operation, median; ratios: median of "
        "per-round ratios to LRU)\n"
    )
    headers = ["policy"]
    for operation in OPERATIONS:
        headers += [f"{operation} ns", f"{operation} x LRU"]
    headers.append("mixed hit %")
    print(markdown_table(headers, rows))

    targets = []
    for policy in POLICY_NAMES:
        if policy == "lru":
            continue
        hit = ratio(policy, "hit")
        targets.append(
            [f"{policy} hit <= 3x LRU hit", f"{hit:.2f}x", "met" if hit <= 3.0 else "missed"]
        )
    for operation, bound in (("hit", 1.5), ("miss + admit", 2.5)):
        measured = ratio("tinylfu", operation)
        targets.append(
            [
                f"tinylfu {operation} <= {bound}x LRU",
                f"{measured:.2f}x",
                "met" if measured <= bound else "missed",
            ]
        )
    print()
    print(markdown_table(["target", "measured", "result"], targets, "lrl"))
    command = "python bench/policies.py" + (" --quick" if args.quick else "")
    print(f"\n{environment()}; command: `{command}`")
    return 0


if __name__ == "__main__":
    run(main)
