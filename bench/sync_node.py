"""What a miss and a write through ``SyncNode`` cost: the hop to the loop thread.

A ``SyncGroup.get`` hit never leaves the calling thread; a miss and a ``set`` run on
the node's event loop while the calling thread waits. Timed per call, from the main
thread, with a ``SyncNode`` running its loop in its own thread:

* ``set``: ``SyncGroup.set`` of a new value;
* ``miss``: ``SyncGroup.get`` of a key not cached, its async loader answering at once;
* the same two through the hop shoal used before (``run_coroutine_threadsafe`` and
  a ``concurrent.futures.Future``), as the baseline of the same run;
* a dict guarded by a ``threading.Lock`` (what Django's LocMem cache does), for scale.

Rounds rotate the candidates; the table shows the median µs per call and the ratio
to the old hop, the median of the paired ratios within each round.

Run: ``python bench/sync_node.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import threading
import time
from collections.abc import Callable

from _common import environment, markdown_table, median, run
from shoal.sync import SyncGroup, SyncNode


async def load(key: str) -> bytes:
    return b"v"


def old_hop(loop: asyncio.AbstractEventLoop, coro: object) -> object:
    """The hop of shoal before: run_coroutine_threadsafe and a concurrent Future."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result()  # type: ignore[arg-type]


def candidates(group: SyncGroup[bytes]) -> dict[str, Callable[[int], object]]:
    inner = group.group
    loop = inner.loop
    assert loop is not None
    lock = threading.Lock()
    table: dict[str, bytes] = {}
    counter = itertools.count()

    def locmem_set(i: int) -> None:
        with lock:
            table[f"k{i}"] = b"v"

    def new_miss(i: int) -> object:
        return group.get(f"miss-{next(counter)}")

    def old_miss(i: int) -> object:
        return old_hop(loop, inner.get(f"miss-{next(counter)}"))

    return {
        "set (old hop)": lambda i: old_hop(loop, inner.set(f"s{i}", b"v")),
        "set": lambda i: group.set(f"s{i}", b"v"),
        "miss (old hop)": old_miss,
        "miss": new_miss,
        "dict + Lock set (LocMem)": locmem_set,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    rounds, calls = (5, 2000) if args.quick else (15, 5000)
    with SyncNode() as node:
        group: SyncGroup[bytes] = node.group("g", load, capacity_entries=1000)
        cands = candidates(group)
        times: dict[str, list[float]] = {name: [] for name in cands}
        names = list(cands)
        gc.disable()
        try:
            for r in range(rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    fn = cands[name]
                    start = time.perf_counter()
                    for i in range(calls):
                        fn(i)
                    times[name].append((time.perf_counter() - start) / calls * 1e6)
        finally:
            gc.enable()
    rows = []
    for name in names:
        base = "set (old hop)" if name.startswith("set") else "miss (old hop)"
        paired = [t / b for t, b in zip(times[name], times[base], strict=True)]
        rel = f"{median(paired):.2f}x" if not name.startswith("dict") else ""
        rows.append([name, f"{median(times[name]):.1f}", rel])
    print(environment())
    print(markdown_table(["call", "µs per call (median)", "vs the old hop"], rows))
    return 0


if __name__ == "__main__":
    run(main)
