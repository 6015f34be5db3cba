"""Ring balance: how evenly each ring flavour spreads keys, what a lookup costs, and
how many keys move when a node leaves.

Rings of 3, 10 and 100 nodes (ids ``http://10.0.0.N:8080``), for each flavour at
its defaults: ``shoal`` (xxh3, 160 vnodes, 8 probes), ``golang`` (crc32, 50
vnodes, one probe) and ``groupcache-go`` (FNV-1 of md5 hex, 50, one probe), plus
``shoal`` with one probe (the textbook lookup on the same points) as the
reference for what the probes buy. ``--probes P[,P...]`` adds ``shoal`` rings
with other probe counts.

* Balance: 1,000,000 random keys (100,000 with ``--quick``) are assigned with
  ``Ring.owner``; the table shows the busiest and the idlest node against the
  mean, and the busiest node's expected share from ``Ring.shares()`` (free of
  sampling noise).
* A node leaves: the last node is removed (``Ring.with_nodes``) and every key is
  looked up again; the moved fraction is compared with the ideal ``1/N``. The
  script exits 1 if any key moved that the leaving node did not own, or if one
  of its keys stayed.
* Lookup cost: ``Ring.owner`` in ns per call over 10,000 keys, in interleaved
  rounds with the garbage collector off (as ``timeit`` does), against the key
  hash alone and against a textbook ring (``bisect`` over the sorted points,
  a wrap check and a dict from point to node; Go's rules, signed points for
  groupcache-go) on the same keys. The script exits 1 if a one-probe ring and
  the textbook ring disagree on any key; a multi-probe ring picks other owners
  by design, and its ratio is what its balance costs.

Run: ``python bench/ring_balance.py [--quick] [--probes P[,P...]]``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import random
import time
import zlib
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import xxhash

from _common import BenchError, environment, markdown_table, median, run
from shoal.ring import Ring

NODE_COUNTS = (3, 10, 100)
TARGET = 1.10
Config = tuple[str, int, int]
"""A ring to measure: flavour, vnodes, probes."""
TARGET_CONFIG: Config = ("shoal", 160, 8)
REFERENCE: Config = ("shoal", 160, 1)
CONFIGS: tuple[Config, ...] = (
    TARGET_CONFIG,
    REFERENCE,
    ("golang", 50, 1),
    ("groupcache-go", 50, 1),
)
TIMING_KEYS = 10_000
TIMING_NODES = (10, 100)

Hash = Callable[[bytes], int]


def node_ids(count: int) -> list[str]:
    """``count`` node ids shaped like peer URLs."""
    return [f"http://10.0.0.{i}:8080" for i in range(1, count + 1)]


def random_keys(count: int, seed: int) -> list[str]:
    """``count`` distinct-looking keys with random suffixes."""
    rng = random.Random(seed)
    return [f"user:{rng.getrandbits(48):012x}" for _ in range(count)]


def fnv1_64_signed(data: bytes) -> int:
    """FNV-1 64 as Go's ``int(fnv1.HashBytes64(data))``, written out for the baseline."""
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF) ^ byte
    return h - (1 << 64) if h >> 63 else h


def md5_fnv1_64_signed(label: bytes) -> int:
    """mailgun/groupcache-go's vnode point."""
    return fnv1_64_signed(hashlib.md5(label).hexdigest().encode())


# Go's rules for each flavour: (vnode hash, key hash).
GO_RULES: dict[str, tuple[Hash, Hash]] = {
    "shoal": (xxhash.xxh3_64_intdigest, xxhash.xxh3_64_intdigest),
    "golang": (zlib.crc32, zlib.crc32),
    "groupcache-go": (md5_fnv1_64_signed, fnv1_64_signed),
}


def vnode_owners(nodes: list[str], replicas: int, flavour: str) -> dict[int, str]:
    """Point -> node for every vnode, by Go's rules (a later node wins a collision)."""
    vnode_hash = GO_RULES[flavour][0]
    return {vnode_hash(f"{i}{n}".encode()): n for n in nodes for i in range(replicas)}


def textbook_ring(nodes: list[str], replicas: int, flavour: str) -> Callable[[str], str]:
    """The usual Python ring: sorted points, ``bisect``, a wrap check, a point -> node dict."""
    key_hash = GO_RULES[flavour][1]
    owner_of = vnode_owners(nodes, replicas, flavour)
    points = sorted(owner_of)
    count = len(points)

    def owner(key: str) -> str:
        index = bisect_left(points, key_hash(key.encode()))
        if index == count:
            index = 0
        return owner_of[points[index]]

    return owner


def hash_only(flavour: str) -> Callable[[str], int]:
    """The flavour's key hash alone, as a lookup would call it."""
    key_hash = GO_RULES[flavour][1]

    def hashed(key: str) -> int:
        return key_hash(key.encode())

    return hashed


def label(config: Config) -> str:
    flavour, replicas, probes = config
    suffix = " (reference)" if config == REFERENCE else ""
    plural = "s" if probes > 1 else ""
    return f"{flavour}, {replicas} vnodes, {probes} probe{plural}{suffix}"


@dataclass
class Timed:
    """One lookup to time; ``samples`` are ns per call, one per round."""

    name: str
    call: Callable[[str], object]
    samples: list[float] = field(default_factory=list)


def time_pass(call: Callable[[str], object], keys: list[str]) -> float:
    """ns per call of one pass of ``call`` over ``keys``, with the collector off."""
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for key in keys:
            call(key)
        return (time.perf_counter_ns() - start) / len(keys)
    finally:
        gc.enable()


def check(condition: bool, message: str) -> None:
    """Raise :class:`BenchError` unless ``condition`` holds."""
    if not condition:
        raise BenchError(message)


def build(config: Config, nodes: list[str]) -> Ring:
    """The ring of ``config`` over ``nodes``."""
    flavour, replicas, probes = config
    return Ring.build(nodes, flavour=flavour, replicas=replicas, probes=probes)


def balance_and_leave(
    keys: list[str], configs: list[Config]
) -> tuple[list[list[str]], list[list[str]], dict[tuple[Config, int], float]]:
    """Assign every key on every ring, then again after the last node leaves."""
    balance_rows: list[list[str]] = []
    leave_rows: list[list[str]] = []
    max_over_mean: dict[tuple[Config, int], float] = {}
    for config in configs:
        for count in NODE_COUNTS:
            nodes = node_ids(count)
            start = time.perf_counter()
            ring = build(config, nodes)
            build_ms = (time.perf_counter() - start) * 1e3
            owners = list(map(ring.owner, keys))
            per_node = Counter(owners)
            check(set(per_node) <= set(nodes), f"{label(config)}: an owner is not a member")
            mean = len(keys) / count
            busiest = max(per_node.values()) / mean
            idlest = min(per_node.get(n, 0) for n in nodes) / mean
            shares = ring.shares()
            exact = max(shares.values()) * count
            max_over_mean[config, count] = busiest
            balance_rows.append(
                [
                    label(config),
                    str(count),
                    f"{busiest:.3f}",
                    f"{idlest:.3f}",
                    f"{exact:.3f}",
                    f"{build_ms:.1f}",
                ]
            )

            leaver = nodes[-1]
            after = list(map(ring.with_nodes(nodes[:-1]).owner, keys))
            moved = 0
            for old, new in zip(owners, after, strict=True):
                if old != new:
                    moved += 1
                    check(old == leaver, f"{label(config)}: a key moved from {old}, not {leaver}")
            check(
                moved == per_node[leaver],
                f"{label(config)}: {per_node[leaver] - moved} keys of {leaver} did not move",
            )
            fraction = moved / len(keys)
            leave_rows.append(
                [
                    label(config),
                    str(count),
                    f"{fraction:.2%}",
                    f"{1 / count:.2%}",
                    f"{fraction * count:.2f}x",
                ]
            )
    return balance_rows, leave_rows, max_over_mean


def lookup_cost(keys: list[str], rounds: int, configs: list[Config]) -> list[list[str]]:
    """Interleaved timings of owner(), the hash alone and a textbook ring, per ring."""
    timed: dict[tuple[str, str], Timed] = {}
    for config in configs:
        flavour, replicas, probes = config
        name = label(config)
        timed[flavour, "hash"] = Timed(f"{flavour} hash", hash_only(flavour))
        for count in TIMING_NODES:
            nodes = node_ids(count)
            ring = build(config, nodes)
            textbook = textbook_ring(nodes, replicas, flavour)
            if probes == 1:
                wrong = [k for k in keys if ring.owner(k) != textbook(k)]
                check(
                    not wrong, f"{name}: Ring.owner and the textbook ring disagree on {wrong[:3]}"
                )
            timed[name, f"owner {count}"] = Timed(f"{name} owner {count}", ring.owner)
            timed[flavour, f"textbook {count}"] = Timed(f"{flavour} textbook {count}", textbook)
    every = list(timed.values())
    for r in range(rounds):
        shift = r % len(every)
        for candidate in every[shift:] + every[:shift]:
            candidate.samples.append(time_pass(candidate.call, keys))

    rows = []
    for config in configs:
        flavour, name = config[0], label(config)
        row = [name, f"{median(timed[flavour, 'hash'].samples):.0f}"]
        for count in TIMING_NODES:
            own = timed[name, f"owner {count}"].samples
            book = timed[flavour, f"textbook {count}"].samples
            paired = median([a / b for a, b in zip(own, book, strict=True)])
            row += [f"{median(own):.0f}", f"{median(book):.0f}", f"{paired:.2f}x"]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short run (100,000 keys)")
    parser.add_argument("--keys", type=int, help="random keys (default 1,000,000; 100,000 quick)")
    parser.add_argument("--rounds", type=int, help="lookup timing rounds (default 30; 8 quick)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random keys")
    parser.add_argument(
        "--probes", help="also measure shoal rings with these probe counts (for example 2,4,16)"
    )
    args = parser.parse_args(argv)
    try:
        probes = [int(p) for p in args.probes.split(",")] if args.probes else []
    except ValueError:
        parser.error(f"--probes takes counts separated by commas, not {args.probes!r}")
    if any(not 1 <= p <= 64 for p in probes):
        parser.error("--probes counts must be from 1 to 64")
    key_count = args.keys or (100_000 if args.quick else 1_000_000)
    rounds = args.rounds or (8 if args.quick else 30)
    keys = random_keys(key_count, args.seed)

    flavour, replicas, _ = TARGET_CONFIG
    configs = [
        *CONFIGS,
        *((flavour, replicas, p) for p in probes if (flavour, replicas, p) not in CONFIGS),
    ]
    balance_rows, leave_rows, max_over_mean = balance_and_leave(keys, configs)
    cost_rows = lookup_cost(keys[:TIMING_KEYS], rounds, configs)

    print(
        f"Ring balance: {key_count:,} random keys over N nodes `http://10.0.0.N:8080` "
        "(keys per node over the mean; expected: the busiest node's share from "
        "`Ring.shares()` times N; lower is better, 1.000 is perfect)\n"
    )
    print(
        markdown_table(
            [
                "ring",
                "nodes",
                "max/mean keys",
                "min/mean keys",
                "max/mean expected",
                "build ms",
            ],
            balance_rows,
            "lrrrrr",
        )
    )
    print(f"\nA node leaves: the last of N nodes is removed; {key_count:,} keys looked up again\n")
    print(
        markdown_table(
            ["ring", "nodes", "keys moved", "ideal 1/N", "moved / ideal"],
            leave_rows,
            "lrrrr",
        )
    )
    print(
        f"\nLookup cost: ns per call over {TIMING_KEYS:,} keys, median of {rounds} "
        "interleaved rounds; textbook = bisect + wrap check + dict on the same hash (one "
        "probe); ratio: median of per-round ratios\n"
    )
    cost_headers = ["ring", "key hash alone"]
    for count in TIMING_NODES:
        cost_headers += [
            f"owner() {count} nodes",
            f"textbook {count} nodes",
            f"owner/textbook {count}",
        ]
    print(markdown_table(cost_headers, cost_rows))

    targets = []
    for count in NODE_COUNTS:
        measured = max_over_mean[TARGET_CONFIG, count]
        targets.append(
            [
                f"{label(TARGET_CONFIG)}, {count} nodes: max/mean ≤ {TARGET:.2f}",
                f"{measured:.3f}",
                "met" if measured <= TARGET else "missed",
            ]
        )
    print()
    print(markdown_table(["target", "measured", "result"], targets, "lrl"))
    command = "python bench/ring_balance.py" + (" --quick" if args.quick else "")
    if args.keys:
        command += f" --keys {args.keys}"
    if args.rounds:
        command += f" --rounds {args.rounds}"
    if probes:
        command += f" --probes {args.probes}"
    print(f"\n{environment()}; command: `{command}`")
    return 0


if __name__ == "__main__":
    run(main)
