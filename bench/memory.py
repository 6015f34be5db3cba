"""Memory per cached entry: what an entry costs beyond its key and value bytes.

Fills a container with 1,000,000 entries of 16-byte str keys and 100-byte
bytes values (116 payload bytes each) in a fresh subprocess, and divides the
growth by the number of entries. Two measurements, each in its own process:

* RSS: growth of the resident set (``VmRSS``), so it includes allocator
  rounding (CPython's small-object allocator rounds up to 16 bytes) and slack;
* tracemalloc: growth of the bytes Python allocated, as requested.

Containers: a shoal ``Store`` (unbounded, no TTLs: the per-entry cost of a
group's main cache), ``cachetools.LRUCache``, and, for reference, a plain
``dict`` and a ``collections.OrderedDict``. A second table splits the cost:
the key object and the value object (``sys.getsizeof``), the container's dict
tables, the links an ``OrderedDict`` adds for its order (a 32-byte node per
entry plus an 8-byte slot per table slot), what tracemalloc saw besides, and
the allocator's rounding and slack (RSS minus tracemalloc).

Run: ``python bench/memory.py [--quick]`` (``--quick`` stores 200,000 entries;
per-entry costs then differ a little, as dict tables grow in powers of two).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from typing import Any

import cachetools

from _common import BenchError, environment, markdown_table, run
from shoal import Store

KEY_SIZE = 16
VALUE_SIZE = 100
PAYLOAD = KEY_SIZE + VALUE_SIZE
TARGET = 200
SHOAL = "shoal Store"


def key_of(i: int) -> str:
    return f"{i:0{KEY_SIZE}d}"


def value_of(key: str) -> bytes:
    return key.encode() * (VALUE_SIZE // KEY_SIZE) + b"v" * (VALUE_SIZE % KEY_SIZE)


# -- the containers: each returns (setter, container, internal tables) ------------------


def make_store(n: int) -> tuple[Callable[[str, bytes], object], object, list[Any]]:
    store = Store(capacity_bytes=None, capacity_entries=None)
    return store.set, store, [store._policy._data]  # type: ignore[attr-defined]


def make_cachetools(n: int) -> tuple[Callable[[str, bytes], object], object, list[Any]]:
    cache = cachetools.LRUCache[str, bytes](maxsize=n)
    tables = [cache._Cache__data, cache._LRUCache__order]  # type: ignore[attr-defined]
    return cache.__setitem__, cache, tables


def make_mapping(
    kind: type[MutableMapping[str, bytes]],
) -> Callable[[int], tuple[Callable[[str, bytes], object], object, list[Any]]]:
    def make(n: int) -> tuple[Callable[[str, bytes], object], object, list[Any]]:
        mapping = kind()
        return mapping.__setitem__, mapping, [mapping]

    return make


CONTAINERS: dict[str, Callable[[int], tuple[Callable[[str, bytes], object], object, list[Any]]]] = {
    SHOAL: make_store,
    "cachetools.LRUCache": make_cachetools,
    "dict (reference)": make_mapping(dict),
    "OrderedDict (reference)": make_mapping(OrderedDict),
}


def rss_bytes() -> int:
    """This process's resident set size, from ``/proc/self/status``."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError("no VmRSS in /proc/self/status (the RSS method needs Linux)")


def child(container: str, method: str, entries: int) -> dict[str, float]:
    """Fill one container in this process and measure the growth per entry."""
    make = CONTAINERS[container]
    gc.collect()
    if method == "tracemalloc":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = rss_bytes()
    put, holder, tables = make(entries)
    for i in range(entries):
        key = key_of(i)
        put(key, value_of(key))
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if method == "tracemalloc" else rss_bytes()
    if method == "tracemalloc":
        tracemalloc.stop()
    if len(holder) != entries:  # type: ignore[arg-type]
        raise BenchError(f"{container} holds {len(holder)} entries, not {entries}")  # type: ignore[arg-type]
    probe = key_of(entries // 2)
    got = holder.get(probe) if isinstance(holder, Store) else holder[probe]  # type: ignore[index]
    if got != value_of(probe):
        raise BenchError(f"{container} returned a wrong value")
    return {
        "per_entry": (after - before) / entries,
        "key_object": sys.getsizeof(probe),
        "value_object": sys.getsizeof(got),
        "tables": sum(sys.getsizeof(t) for t in tables) / entries,
        # dict.__sizeof__ of an OrderedDict leaves out its links (nodes and node index).
        "dict_tables": sum(dict.__sizeof__(t) for t in tables) / entries,
    }


def measure(container: str, method: str, entries: int) -> dict[str, float]:
    """Run :func:`child` in a fresh interpreter and return its figures."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", container, method, str(entries)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"measuring {container} ({method}) failed:\n{proc.stderr}")
    figures: dict[str, float] = json.loads(proc.stdout)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="store 200,000 entries")
    parser.add_argument("--entries", type=int, help="entries (default 1,000,000)")
    parser.add_argument(
        "--child", nargs=3, metavar=("CONTAINER", "METHOD", "ENTRIES"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        container, method, entries = args.child
        print(json.dumps(child(container, method, int(entries))))
        return 0
    entries = args.entries or (200_000 if args.quick else 1_000_000)

    results = {
        (name, method): measure(name, method, entries)
        for name in CONTAINERS
        for method in ("rss", "tracemalloc")
    }

    rows = []
    for name in CONTAINERS:
        rss, traced = results[name, "rss"], results[name, "tracemalloc"]
        rows.append(
            [
                name,
                f"{rss['per_entry']:.0f}",
                f"{rss['per_entry'] - PAYLOAD:.0f}",
                f"{traced['per_entry']:.0f}",
                f"{traced['per_entry'] - PAYLOAD:.0f}",
            ]
        )
    print(
        f"Memory per entry, {entries:,} entries of {KEY_SIZE}-byte str keys and "
        f"{VALUE_SIZE}-byte bytes values ({PAYLOAD} payload bytes), bytes per entry\n"
    )
    print(
        markdown_table(
            [
                "container",
                "RSS total",
                f"RSS beyond {PAYLOAD}",
                "tracemalloc total",
                f"tracemalloc beyond {PAYLOAD}",
            ],
            rows,
        )
    )

    split = []
    for name in CONTAINERS:
        f = results[name, "tracemalloc"]
        other = f["per_entry"] - f["key_object"] - f["value_object"] - f["tables"]
        split.append(
            [
                name,
                f"{f['key_object']:.0f}",
                f"{f['value_object']:.0f}",
                f"{f['dict_tables']:.0f}",
                f"{f['tables'] - f['dict_tables']:.0f}",
                f"{other:.0f}",
                f"{results[name, 'rss']['per_entry'] - f['per_entry']:.0f}",
            ]
        )
    print(
        f"\nWhere the bytes go, per entry (key payload {KEY_SIZE}, value payload {VALUE_SIZE}; "
        "allocator rounding and slack = RSS - tracemalloc)\n"
    )
    print(
        markdown_table(
            [
                "container",
                "key str object",
                "value bytes object",
                "dict tables",
                "OrderedDict links",
                "other",
                "allocator rounding, slack",
            ],
            split,
        )
    )

    overhead = max(results[SHOAL, m]["per_entry"] for m in ("rss", "tracemalloc")) - PAYLOAD
    verdict = "met" if overhead <= TARGET else "missed"
    if entries != 1_000_000:
        verdict += " (the target is set for 1,000,000 entries)"
    print(
        f"\nTarget: {SHOAL} overhead beyond {PAYLOAD} bytes ≤ {TARGET} bytes per entry "
        f"(worse of the two methods): {overhead:.0f}, {verdict}."
    )
    command = "python bench/memory.py" + (" --quick" if args.quick else "")
    print(f"\n{environment()}; command: `{command}`")
    return 0


if __name__ == "__main__":
    run(main)
