"""Local hit cost: what a cache hit costs in the process that holds the value.

Candidates, each timed as ``for key in order: value = get(key)`` over the same
precomputed random order of 10,000 cached keys:

* ``Store.get`` hit: shoal's thread-safe store (a lock, counters, LRU touch);
* ``SyncGroup.get`` hit: the blocking facade, called from the main thread while
  a ``SyncNode`` runs its event loop in its own thread (a hit stays in the
  calling thread);
* ``await Group.get`` hit: many awaits in one coroutine inside a running loop,
  once on asyncio's loop and once on uvloop's (when installed);
* baselines: ``cachetools.LRUCache`` guarded by a ``threading.Lock``
  (``with lock: value = cache[key]``) and a bounded ``functools.lru_cache`` hit.

Every round times each candidate once over one pass of the keys, in a rotating
order, with the garbage collector off (as ``timeit`` does). The table shows the
best and the median round in ns per get. The ratios are the median over rounds
of the ratio within a round: a burst of load from other processes slows every
candidate of a round alike, so paired ratios are much steadier than ratios of
absolute timings on a busy machine. Lookup keys are distinct string objects
equal to the stored keys, as keys parsed from requests would be.

Run: ``python bench/local_hits.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cachetools

from _common import BenchError, environment, loop_factories, markdown_table, median, run
from shoal import Group, GroupConfig, Store
from shoal.sync import SyncGroup, SyncNode

KEYS = 10_000
VALUE_SIZE = 100
LOCKED_LRU = "cachetools.LRUCache + Lock"
LRU_CACHE = "functools.lru_cache"
SYNC_FACADE = "shoal SyncGroup.get (sync facade)"


@dataclass
class Candidate:
    """One way to serve a hit; ``run`` times one pass over the order, in ns."""

    name: str
    run: Callable[[], int]
    samples: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return median(self.samples)

    def ratio_to(self, baseline: Candidate) -> float:
        """Median over rounds of this candidate's time over ``baseline``'s in the same round."""
        return median([a / b for a, b in zip(self.samples, baseline.samples, strict=True)])


def value_of(key: str) -> bytes:
    """The value cached under ``key``: ``VALUE_SIZE`` bytes derived from it."""
    return key.encode().ljust(VALUE_SIZE, b".")


def make_keys(seed: int) -> tuple[list[str], list[str]]:
    """The stored keys, and lookup keys (equal strings, distinct objects) in random order."""
    stored = [f"key:{i:08d}" for i in range(KEYS)]
    lookup = ["".join(("key:", k[4:])) for k in stored]
    random.Random(seed).shuffle(lookup)
    return stored, lookup


def timed_loop(get: Callable[[str], object], order: list[str]) -> Callable[[], int]:
    """A runner timing ``get(key)`` for every key of ``order``."""

    def run() -> int:
        start = time.perf_counter_ns()
        for key in order:
            value = get(key)
        elapsed = time.perf_counter_ns() - start
        del value
        return elapsed

    return run


def locked_lru_loop(cache: cachetools.LRUCache[str, bytes], order: list[str]) -> Callable[[], int]:
    """The cachetools baseline: the usual lock-guarded subscript."""
    lock = threading.Lock()

    def run() -> int:
        start = time.perf_counter_ns()
        for key in order:
            with lock:
                value = cache[key]
        elapsed = time.perf_counter_ns() - start
        del value
        return elapsed

    return run


def empty_loop(order: list[str]) -> Callable[[], int]:
    """The bare ``for`` loop, to show how much of each figure is iteration."""

    def run() -> int:
        start = time.perf_counter_ns()
        for key in order:
            value = key
        elapsed = time.perf_counter_ns() - start
        del value
        return elapsed

    return run


def async_loop(
    loop: asyncio.AbstractEventLoop, group: Group[bytes], order: list[str]
) -> Callable[[], int]:
    """A runner timing ``await group.get(key)`` inside a coroutine on ``loop``."""

    async def timed() -> int:
        get = group.get
        start = time.perf_counter_ns()
        for key in order:
            value = await get(key)
        elapsed = time.perf_counter_ns() - start
        del value
        return elapsed

    def run() -> int:
        return loop.run_until_complete(timed())

    return run


async def load(key: str) -> bytes:
    """The loader of every group here: any key, answered at once."""
    return value_of(key)


async def warm(group: Group[bytes], keys: list[str]) -> None:
    """Load every key into ``group`` (concurrently; each is a miss)."""
    await asyncio.gather(*(group.get(k) for k in keys))


def check(condition: bool, message: str) -> None:
    """Raise :class:`BenchError` unless ``condition`` holds."""
    if not condition:
        raise BenchError(message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short run (40 rounds)")
    parser.add_argument("--rounds", type=int, help="rounds (default 300, or 40 with --quick)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the key order")
    args = parser.parse_args(argv)
    rounds = args.rounds or (40 if args.quick else 300)
    stored, order = make_keys(args.seed)

    # Baselines.
    lru = cachetools.LRUCache[str, bytes](maxsize=2 * KEYS)
    for key in stored:
        lru[key] = value_of(key)

    @functools.lru_cache(maxsize=2 * KEYS)
    def memo(key: str) -> bytes:
        return value_of(key)

    for key in stored:
        memo(key)

    # shoal: a bare store, the sync facade over a node in its thread, and async groups.
    store = Store(capacity_bytes=64 << 20)
    for key in stored:
        store.set(key, value_of(key))

    node = SyncNode().start()
    loops: dict[str, asyncio.AbstractEventLoop] = {}
    try:
        facade: SyncGroup[bytes] = node.group("hits", load)
        for key in stored:
            facade.get(key)  # a miss: loaded on the node's loop

        candidates = [
            Candidate(LOCKED_LRU, locked_lru_loop(lru, order)),
            Candidate(LRU_CACHE, timed_loop(memo, order)),
            Candidate("shoal Store.get", timed_loop(store.get, order)),
            Candidate(SYNC_FACADE, timed_loop(facade.get, order)),
        ]
        groups: dict[str, Group[bytes]] = {}
        for loop_name, factory in loop_factories().items():
            loop = loops[loop_name] = factory()
            group: Group[bytes] = Group(GroupConfig(name=f"hits-{loop_name}"), load)
            loop.run_until_complete(warm(group, stored))
            groups[loop_name] = group
            candidates.append(
                Candidate(f"shoal await Group.get ({loop_name})", async_loop(loop, group, order))
            )
        bare = Candidate("(bare for loop, included above)", empty_loop(order))

        gc.collect()
        every = [*candidates, bare]
        for r in range(rounds):
            shift = r % len(every)
            for candidate in every[shift:] + every[:shift]:
                gc.disable()
                try:
                    candidate.samples.append(candidate.run() / len(order))
                finally:
                    gc.enable()

        # Every timed get must have been a hit returning the right bytes.
        timed_gets = rounds * len(order)
        check(memo.cache_info().misses == KEYS, "functools.lru_cache missed during the run")
        stats = store.statistics()
        check(stats.hits == stats.gets == timed_gets, f"Store.get missed: {stats}")
        facade_stats = facade.statistics()
        check(
            facade_stats.loads == KEYS and facade_stats.hits == timed_gets,
            f"SyncGroup.get missed during the run: {facade_stats}",
        )
        for loop_name, group in groups.items():
            g = group.statistics()
            check(
                g.loads == KEYS and g.hits == timed_gets,
                f"Group.get ({loop_name}) missed during the run: {g}",
            )
        probe = order[0]
        want = value_of(probe)
        check(store.get(probe) == want and facade.get(probe) == want, "wrong value from shoal")
        for loop_name, group in groups.items():
            got = loops[loop_name].run_until_complete(group.get(probe))
            check(got == want, f"wrong value from Group.get ({loop_name})")
    finally:
        node.close()
        for loop in loops.values():
            loop.close()

    by_name = {c.name: c for c in candidates}
    locked, memo_ = by_name[LOCKED_LRU], by_name[LRU_CACHE]
    rows = [
        [
            c.name,
            f"{c.best:.0f}",
            f"{c.median:.0f}",
            f"{c.ratio_to(locked):.2f}x",
            f"{c.ratio_to(memo_):.2f}x",
        ]
        for c in candidates
    ]
    rows.append([bare.name, f"{bare.best:.0f}", f"{bare.median:.0f}", "", ""])
    print(
        f"Local hit cost, {KEYS:,} cached keys of {VALUE_SIZE}-byte values in random order, "
        f"{rounds} interleaved rounds of {len(order):,} gets (ns/op; lower is better; "
        "ratios: median of per-round ratios)\n"
    )
    print(
        markdown_table(
            ["operation", "ns/op (best)", "ns/op (median)", f"x {LOCKED_LRU}", f"x {LRU_CACHE}"],
            rows,
        )
    )

    sync = by_name[SYNC_FACADE]
    sync_ratio = sync.ratio_to(locked)
    targets = [
        [
            f"sync-facade hit ≤ 1.0x {LOCKED_LRU}",
            f"{sync_ratio:.2f}x",
            "met" if sync_ratio <= 1.0 else "missed",
        ]
    ]
    for loop_name in groups:
        async_ratio = by_name[f"shoal await Group.get ({loop_name})"].ratio_to(sync)
        targets.append(
            [
                f"async hit ({loop_name}) ≤ 2x sync-facade hit",
                f"{async_ratio:.2f}x",
                "met" if async_ratio <= 2.0 else "missed",
            ]
        )
    print()
    print(markdown_table(["target", "measured", "result"], targets, "lrl"))
    command = "python bench/local_hits.py" + (" --quick" if args.quick else "")
    print(f"\n{environment()}; command: `{command}`")
    return 0


if __name__ == "__main__":
    run(main)
