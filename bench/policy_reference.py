"""Hit ratios of every shoal policy beside a reference W-TinyLFU (theine), on every public trace.

Every trace of the trace directory (default ``../shared/traces`` beside the
repository: the LIRS, cache2k, address and AdaptSize collections of the
Caffeine simulator, the ARC paper's traces and libCacheSim's sample, in all
their formats) is replayed at a grid of cache sizes, from about 1% to 50% of
its distinct keys (default ``1,4,15,50`` percent), through every shoal policy
and through **theine** (Caffeine's adaptive W-TinyLFU ported to Rust, PyPI
``theine``), whose core is driven synchronously: a held key's request is
``access([h])``, a miss ``set([(h, 0)])`` (no expiry) and drops the keys it
returns from the held set. theine hashes keys itself in its sketch, so its
hit ratio depends on the key hashes given: it is run several times (default
3) with differently seeded hashes, and the table shows the min and max.

Per cell the table shows every policy's hit ratio (%), the best of LRU, ARC
and theine (its max) and shoal W-TinyLFU's distance to theine's min and to
that best; a summary gives the worst cell of each kind and the targets:

* W-TinyLFU >= theine's min - 0.3 point on every cell;
* W-TinyLFU >= best of (LRU, ARC, theine) - 1 point on every cell.

The replay is ``shoal bench hitratio``'s: capacity in entries, every request
costs 1, a miss admits the key; W-TinyLFU with a fixed hash (xxh3) and seed,
so figures repeat to the last digit. LRU and ARC are checked against their
published rows on ``lirs/gli`` (the script fails if LRU or ARC is off them).

The ARC traces and the two cache2k ``orm`` traces are millions of requests;
``--max-requests`` (default 1,000,000) replays the first N requests of every
trace, and the table says which traces were cut. The default grid (all 30
trace files, 4 sizes, 6 policies, theine 3 times) takes about 10 minutes on
2 cores with ``--jobs 2``. ``--traces lirs,cache2k/web07`` picks traces by
name or prefix.

Run: ``python bench/policy_reference.py [--jobs 2] [--traces ...] [--max-requests N]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from xxhash import xxh3_64_intdigest

from _common import BenchError, environment, markdown_table, run
from shoal.cli.hitratio import replay, replay_policy, stable_hash
from shoal.cli.traces import read_trace

TRACES_DIR = Path(__file__).resolve().parents[2] / "shared" / "traces"

# name, file (relative to the trace directory), format.
TRACES: tuple[tuple[str, str, str], ...] = (
    *(
        (f"lirs/{n}", f"lirs/{n}.trace.gz", "lirs")
        for n in (
            "2_pools",
            "backf",
            "cpp",
            "cs",
            "gli",
            "loop",
            "multi1",
            "multi2",
            "multi3",
            "ps",
            "scan",
            "sprite",
            "zigzag",
        )
    ),
    ("arc/P2", "arc/P2.lis.zst", "arc"),
    ("arc/P3", "arc/P3.lis.zst", "arc"),
    *(
        (f"cache2k/{n}", f"cache2k/{n}.trace.xz", "cache2k")
        for n in ("web07", "web12", "orm-busy", "orm-night")
    ),
    *(
        (f"address/{n}", f"address/{n}.trace.gz", "address")
        for n in ("gcc", "gzip", "mcf", "swim", "twolf")
    ),
    ("adapt_size/request", "adapt_size/request.trace.xz", "adapt"),
    ("libcachesim/cloudPhysicsIO", "libcachesim/cloudPhysicsIO.txt", "plain"),
    ("libcachesim/cloudPhysicsIO.oracle", "libcachesim/cloudPhysicsIO.oracleGeneral.bin", "oracle"),
)

SHOAL_POLICIES = ("lru", "lfu", "fifo", "arc", "tinylfu")
THEINE = "theine"
LABELS = {
    "lru": "LRU",
    "lfu": "LFU",
    "fifo": "FIFO",
    "arc": "ARC",
    "tinylfu": "W-TinyLFU",
    THEINE: "theine",
}
DEFAULT_PERCENTS = (1.0, 4.0, 15.0, 50.0)
DEFAULT_MAX_REQUESTS = 1_000_000
THEINE_MIN_MARGIN = 0.3
BEST_OF_MARGIN = 1.0

# Published hit ratios (%) on lirs/gli (see the trace directory's README).
GLI_SIZES = (250, 500, 750, 1000, 1250, 1500, 1750, 2000)
GLI_PUBLISHED = {
    "lru": (0.91, 0.95, 1.15, 11.21, 21.25, 36.56, 45.04, 57.41),
    "arc": (1.38, 1.38, 1.41, 21.30, 34.43, 50.44, 55.06, 57.41),
}


@dataclass(frozen=True)
class Trace:
    """The requests replayed of one trace file."""

    name: str
    keys: list[str]
    cut: bool
    """Whether ``keys`` is only the first ``--max-requests`` requests of the file."""

    @property
    def distinct(self) -> int:
        """Distinct keys among the requests replayed."""
        return len(set(self.keys))


@dataclass
class Cell:
    """Hit ratios (%) of every policy on one trace at one size."""

    trace: str
    size: int
    percent: float
    ratios: dict[str, float]
    theine: list[float]

    @property
    def theine_min(self) -> float:
        """theine's lowest hit ratio over its runs."""
        return min(self.theine)

    @property
    def theine_max(self) -> float:
        """theine's highest hit ratio over its runs."""
        return max(self.theine)

    @property
    def best(self) -> tuple[str, float]:
        """The best of LRU, ARC and theine (its max): (label, hit ratio)."""
        options = [("LRU", self.ratios["lru"]), ("ARC", self.ratios["arc"])]
        options.append(("theine", self.theine_max))
        return max(options, key=lambda o: o[1])

    @property
    def vs_theine(self) -> float:
        """W-TinyLFU minus theine's min, in points."""
        return self.ratios["tinylfu"] - self.theine_min

    @property
    def vs_best(self) -> float:
        """W-TinyLFU minus the best of LRU, ARC and theine, in points."""
        return self.ratios["tinylfu"] - self.best[1]


def load(name: str, path: Path, fmt: str, max_requests: int | None) -> Trace:
    """Read up to ``max_requests`` requests of a trace (one shared ``str`` per key)."""
    distinct: dict[str, str] = {}
    stream = read_trace(path, fmt)
    limit = None if max_requests is None else max_requests + 1
    keys = [distinct.setdefault(k, k) for k in islice(stream, limit)]
    cut = max_requests is not None and len(keys) > max_requests
    if cut:
        del keys[max_requests:]
    return Trace(name, keys, cut)


def grid(distinct: int, percents: Sequence[float]) -> list[int]:
    """Cache sizes (entries) at ``percents`` of ``distinct`` keys; distinct and at least 1."""
    return sorted({max(1, round(distinct * p / 100)) for p in percents})


def theine_hit_ratio(keys: Sequence[str], size: int, seed: int) -> float:
    """theine's core replayed synchronously over ``keys`` at ``size`` entries (hash
    seed ``seed``)."""
    from theine_core import TlfuCore, spread

    hashes = {k: spread(xxh3_64_intdigest(k.encode(), seed) >> 1) for k in set(keys)}
    core = TlfuCore(size)
    access, set_ = core.access, core.set
    held: set[int] = set()
    hits = 0
    for key in keys:
        h = hashes[key]
        if h in held:
            hits += 1
            access([h])
        else:
            held.add(h)
            for gone in set_([(h, 0)]):
                held.discard(gone)
    if len(held) > size:
        raise BenchError(f"theine holds {len(held)} entries at size {size}")
    return 100.0 * hits / len(keys) if keys else 0.0


def shoal_hit_ratio(keys: Sequence[str], hashes: dict[str, int], policy: str, size: int) -> float:
    """A shoal policy replayed over ``keys`` at ``size`` entries (as ``shoal bench hitratio``)."""
    instance = replay_policy(policy, size, seed=0, hash_fn=hashes.__getitem__)
    requests, hits = replay(keys, instance, size)
    if len(instance) > size:
        raise BenchError(f"{policy} holds {len(instance)} entries at size {size}")
    return 100.0 * hits / requests if requests else 0.0


# The trace being replayed, for worker processes (inherited by fork).
_shared: tuple[Sequence[str], dict[str, int]] = ((), {})


def _task(policy: str, size: int, seed: int) -> float:
    keys, hashes = _shared
    if policy == THEINE:
        return theine_hit_ratio(keys, size, seed)
    return shoal_hit_ratio(keys, hashes, policy, size)


def measure(
    trace: Trace,
    sizes: Sequence[int],
    *,
    policies: Sequence[str] = SHOAL_POLICIES,
    theine_runs: int = 3,
    jobs: int = 1,
) -> list[Cell]:
    """Every policy (and theine, ``theine_runs`` times) on ``trace`` at every size."""
    global _shared
    tasks = [(p, size, 0) for p in policies for size in sizes]
    tasks += [(THEINE, size, seed) for size in sizes for seed in range(theine_runs)]
    _shared = (trace.keys, {k: stable_hash(k) for k in set(trace.keys)})
    try:
        if jobs > 1 and "fork" in multiprocessing.get_all_start_methods():
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
                futures = [pool.submit(_task, *t) for t in tasks]
                results = [f.result() for f in futures]
        else:
            results = [_task(*t) for t in tasks]
    finally:
        _shared = ((), {})
    distinct = trace.distinct
    cells = {size: Cell(trace.name, size, 100.0 * size / distinct, {}, []) for size in sizes}
    for (policy, size, _), ratio in zip(tasks, results, strict=True):
        if policy == THEINE:
            cells[size].theine.append(ratio)
        else:
            cells[size].ratios[policy] = ratio
    return [cells[size] for size in sizes]


def published_check(trace: Trace, jobs: int) -> list[list[object]]:
    """LRU and ARC on lirs/gli at the published sizes, against the published rows."""
    global _shared
    _shared = (trace.keys, {k: stable_hash(k) for k in set(trace.keys)})
    try:
        rows: list[list[object]] = []
        for policy, published in GLI_PUBLISHED.items():
            got = [_task(policy, size, 0) for size in GLI_SIZES]
            same = [f"{g:.2f}" for g in got] == [f"{p:.2f}" for p in published]
            rows.append([LABELS[policy], *(f"{g:.2f}" for g in got), "exact" if same else "OFF"])
            if not same:
                raise BenchError(f"{policy} on lirs/gli is off its published row: {got}")
        return rows
    finally:
        _shared = ((), {})


def cell_row(cell: Cell, policies: Sequence[str]) -> list[object]:
    """One table row: trace, size, every policy, theine min-max, best, distances."""
    best_label, best = cell.best
    row: list[object] = [cell.trace, f"{cell.size:,} ({cell.percent:.0f}%)"]
    row += [f"{cell.ratios[p]:.2f}" for p in policies]
    row.append(f"{cell.theine_min:.2f}-{cell.theine_max:.2f}")
    row.append(f"{best:.2f} {best_label}")
    row.append(f"{cell.vs_theine:+.2f}")
    row.append(f"{cell.vs_best:+.2f}")
    return row


def summary(cells: Sequence[Cell]) -> list[list[object]]:
    """The worst cell of each kind, and whether the targets are met."""
    worst_theine = min(cells, key=lambda c: c.vs_theine)
    worst_best = min(cells, key=lambda c: c.vs_best)
    met_theine = sum(c.vs_theine >= -THEINE_MIN_MARGIN for c in cells)
    met_best = sum(c.vs_best >= -BEST_OF_MARGIN for c in cells)
    return [
        [
            f"W-TinyLFU >= theine min - {THEINE_MIN_MARGIN}",
            f"{met_theine}/{len(cells)} cells",
            f"{worst_theine.trace} @ {worst_theine.size:,}: {worst_theine.vs_theine:+.2f}",
            "met" if met_theine == len(cells) else "missed",
        ],
        [
            f"W-TinyLFU >= best of LRU, ARC, theine - {BEST_OF_MARGIN}",
            f"{met_best}/{len(cells)} cells",
            f"{worst_best.trace} @ {worst_best.size:,}: {worst_best.vs_best:+.2f}"
            f" (best: {worst_best.best[0]})",
            "met" if met_best == len(cells) else "missed",
        ],
    ]


def select(names: Sequence[str] | None) -> list[tuple[str, str, str]]:
    """The traces named (exactly or by prefix), in the table's order."""
    if not names:
        return list(TRACES)
    chosen = [
        t for t in TRACES if any(t[0] == n or t[0].startswith(n.rstrip("/") + "/") for n in names)
    ]
    unknown = [n for n in names if not any(t[0] == n or t[0].startswith(n + "/") for t in TRACES)]
    if unknown:
        raise BenchError(f"unknown traces {unknown}; known: {', '.join(t[0] for t in TRACES)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--traces", help="comma-separated trace names or prefixes (default: all)")
    parser.add_argument("--dir", type=Path, default=TRACES_DIR, help="the trace directory")
    parser.add_argument(
        "--max-requests",
        type=int,
        default=DEFAULT_MAX_REQUESTS,
        help=f"replay at most N requests per trace (default {DEFAULT_MAX_REQUESTS:,}; 0: all)",
    )
    parser.add_argument(
        "--percents",
        default=",".join(f"{p:g}" for p in DEFAULT_PERCENTS),
        help="cache sizes, in percent of the distinct keys replayed (default 1,4,15,50)",
    )
    parser.add_argument("--theine-runs", type=int, default=3, help="theine runs per cell")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--json", type=Path, help="also write every cell to this JSON file")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a target is missed on some cell"
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.traces.split(",")] if args.traces else None
    percents = [float(p) for p in args.percents.split(",")]
    max_requests = args.max_requests or None
    started = time.perf_counter()

    cells: list[Cell] = []
    notes: list[str] = []
    published: list[list[object]] | None = None
    records: list[dict[str, object]] = []
    for name, relative, fmt in select(names):
        path = args.dir / relative
        if not path.is_file():
            raise BenchError(f"trace {relative} not found under {args.dir}")
        trace = load(name, path, fmt, max_requests)
        if trace.cut:
            notes.append(f"{name}: first {len(trace.keys):,} requests")
        if name == "lirs/gli":
            published = published_check(trace, args.jobs)
        sizes = grid(trace.distinct, percents)
        measured = measure(trace, sizes, theine_runs=args.theine_runs, jobs=args.jobs)
        cells += measured
        records += [
            {
                "trace": name,
                "file": relative,
                "format": fmt,
                "max_requests": max_requests,
                "requests": len(trace.keys),
                "size": c.size,
                "ratios": c.ratios,
                "theine": c.theine,
            }
            for c in measured
        ]
        print(f"  {name}: {len(trace.keys):,} requests, {trace.distinct:,} keys", file=sys.stderr)

    headers = ["trace", "size (% keys)", *(LABELS[p] for p in SHOAL_POLICIES)]
    headers += ["theine min-max", "best of LRU/ARC/theine", "W-TinyLFU - theine min"]
    headers.append("W-TinyLFU - best")
    print(
        f"Hit ratio % by trace and cache size (entries; % of the distinct keys replayed); "
        f"theine: {args.theine_runs} runs with differently seeded key hashes\n"
    )
    align = "ll" + "r" * (len(headers) - 2)
    print(markdown_table(headers, [cell_row(c, SHOAL_POLICIES) for c in cells], align))
    print()
    print(markdown_table(["target", "cells met", "worst cell", "result"], summary(cells), "llll"))
    if published is not None:
        print("\nlirs/gli at the published sizes (LRU and ARC against their published rows):\n")
        print(
            markdown_table(
                ["policy", *(f"{s:,}" for s in GLI_SIZES), "published row"],
                published,
                "l" + "r" * len(GLI_SIZES) + "l",
            )
        )
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))
    cut = "; ".join(notes) if notes else "none"
    print(f"\nTraces cut to their first requests (--max-requests): {cut}.")
    command = (
        "python bench/policy_reference.py"
        + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    )
    elapsed = time.perf_counter() - started
    print(f"\n{environment()}; {elapsed:.0f} s; command: `{command}`")
    if args.strict and any(r[-1] == "missed" for r in summary(cells)):
        return 1
    return 0


if __name__ == "__main__":
    run(main)
