"""``shoal bench hitratio``: replay a cache trace through eviction policies, print hit ratios.

The replay drives the policy objects directly, the way a store does but
without its lock and byte accounting: the capacity is counted in entries and
every request costs 1; a hit is recorded with ``touch``, a miss admits the key
with ``put`` and then evicts while the policy holds more than the capacity.
Hit ratio = 100 * hits / requests, the usual measure of the published tables.

W-TinyLFU's sketch is given a fixed hash (xxh3 of the key, computed once
per distinct key) and its hash-flooding defence a seeded generator, so every
run of the same trace gives the same figures (in a store it uses Python's
per-process ``hash``).

Example::

    shoal bench hitratio --trace gli.trace.gz --format lirs \\
        --policy lru,arc,tinylfu --size 250,500,1000 --plot gli.png
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any, Final

from xxhash import xxh3_64_intdigest

from ..errors import MissingExtra
from ..policy import POLICY_NAMES, Policy, TinyLFUPolicy, make_policy
from .traces import TRACE_FORMATS, TraceError, read_trace

__all__ = [
    "Result",
    "load_keys",
    "replay",
    "replay_policy",
    "stable_hash",
    "hit_ratios",
    "format_table",
    "plot",
    "add_bench_parser",
]

_VALUE: Final = b""
"""What every replayed key maps to: any bytes but None will do."""

POLICY_LABELS: Final = {
    "lru": "LRU",
    "lfu": "LFU (aging)",
    "fifo": "FIFO",
    "arc": "ARC",
    "tinylfu": "W-TinyLFU",
}


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of replaying one trace through one policy at one size."""

    policy: str
    size: int
    requests: int
    hits: int
    seconds: float

    @property
    def ratio(self) -> float:
        """Hit ratio in percent."""
        return 100.0 * self.hits / self.requests if self.requests else 0.0


def stable_hash(key: str) -> int:
    """A hash of ``key`` that is the same in every process (xxh3 of its UTF-8 bytes)."""
    return xxh3_64_intdigest(key.encode())


def replay_policy(
    name: str,
    capacity: int,
    *,
    seed: int = 0,
    hash_fn: Callable[[str], int] = stable_hash,
) -> Policy:
    """A fresh policy for a replay at ``capacity`` entries, repeatable run to run.

    Args:
        name: one of :data:`~shoal.policy.POLICY_NAMES`.
        capacity: entries.
        seed: seed of the randomness a policy uses.
        hash_fn: the hash W-TinyLFU's sketch uses (default :func:`stable_hash`).

    Raises:
        ConfigError: for an unknown policy name or a capacity below 1.
    """
    if name == "tinylfu":
        return TinyLFUPolicy(capacity_entries=capacity, rng=random.Random(seed), hash_fn=hash_fn)
    return make_policy(name, capacity_entries=capacity)


def replay(keys: Iterable[str], policy: Policy, capacity: int) -> tuple[int, int]:
    """Replay ``keys`` through ``policy`` holding at most ``capacity`` entries.

    Returns:
        ``(requests, hits)``.
    """
    lookup, touch, put, evict = policy.lookup, policy.touch, policy.put, policy.evict
    requests = hits = held = 0
    for key in keys:
        requests += 1
        if lookup(key) is not None:
            touch(key)
            hits += 1
        else:
            put(key, _VALUE, 1)
            held += 1
            while held > capacity:
                evict()
                held -= 1
    return requests, hits


def load_keys(path: str | os.PathLike[str], fmt: str, limit: int | None = None) -> list[str]:
    """Read a trace into memory, one shared ``str`` per distinct key.

    Args:
        path: the trace file (compressed or not).
        fmt: its format, one of :data:`~shoal.cli.traces.TRACE_FORMATS`.
        limit: read at most this many requests.
    """
    distinct: dict[str, str] = {}
    keys = read_trace(path, fmt)
    return [distinct.setdefault(k, k) for k in (islice(keys, limit) if limit else keys)]


# The trace being replayed and its keys' hashes, for worker processes (inherited by fork).
_shared: tuple[Sequence[str], dict[str, int]] = ((), {})


def _run_one(
    name: str, size: int, seed: int, trace: tuple[Sequence[str], dict[str, int]] | None = None
) -> Result:
    keys, hashes = _shared if trace is None else trace
    start = time.perf_counter()
    policy = replay_policy(name, size, seed=seed, hash_fn=hashes.__getitem__)
    requests, hits = replay(keys, policy, size)
    return Result(name, size, requests, hits, time.perf_counter() - start)


def hit_ratios(
    keys: Sequence[str],
    policies: Sequence[str],
    sizes: Sequence[int],
    *,
    seed: int = 0,
    jobs: int = 1,
) -> list[Result]:
    """Replay ``keys`` through every policy at every size.

    Args:
        keys: the requests, in order.
        policies: policy names (see :data:`~shoal.policy.POLICY_NAMES`).
        sizes: capacities in entries.
        seed: seed of the randomness a policy uses.
        jobs: worker processes (on platforms that fork; else one).

    Returns:
        One result per policy and size, in the order of ``policies`` then ``sizes``.
    """
    runs = [(name, size) for name in policies for size in sizes]
    # Each distinct key is hashed once, not at every request.
    trace = (keys, {key: stable_hash(key) for key in set(keys)})
    if jobs <= 1 or len(runs) == 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [_run_one(name, size, seed, trace) for name, size in runs]
    global _shared
    _shared = trace
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_run_one, name, size, seed) for name, size in runs]
            return [f.result() for f in futures]
    finally:
        _shared = ((), {})


def format_table(results: Sequence[Result], sizes: Sequence[int]) -> str:
    """A Markdown table: one row per policy, one column per size, hit ratios in percent."""
    by_policy: dict[str, dict[int, Result]] = {}
    for r in results:
        by_policy.setdefault(r.policy, {})[r.size] = r
    header = ["policy", *(f"{size:,}" for size in sizes)]
    rows = [
        [POLICY_LABELS.get(name, name), *(f"{runs[size].ratio:.2f}" for size in sizes)]
        for name, runs in by_policy.items()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)) + " |",
        "|"
        + "|".join(
            ":" + "-" * (w + 1) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)
        )
        + "|",
    ]
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: Sequence[Result], path: str | os.PathLike[str], title: str) -> None:
    """Draw hit ratio against cache size, one line per policy, into a PNG file.

    Raises:
        MissingExtra: without matplotlib (``shoal[plot]``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingExtra("matplotlib", "plot") from exc
    by_policy: dict[str, list[Result]] = {}
    for r in results:
        by_policy.setdefault(r.policy, []).append(r)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        for name, runs in by_policy.items():
            runs.sort(key=lambda r: r.size)
            ax.plot(
                [r.size for r in runs],
                [r.ratio for r in runs],
                marker="o",
                label=POLICY_LABELS.get(name, name),
            )
        ax.set_xlabel("cache size (entries)")
        ax.set_ylabel("hit ratio (%)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.fspath(path), dpi=100)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- command line


def _csv(parse: Callable[[str], Any], what: str) -> Callable[[str], list[Any]]:
    def parse_list(text: str) -> list[Any]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{what}: an empty list")
        try:
            return [parse(item) for item in items]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{what}: {exc}") from None

    return parse_list


def _policy_name(text: str) -> str:
    name = text.lower()
    if name not in POLICY_NAMES:
        raise ValueError(f"unknown policy {text!r}; choose from {', '.join(POLICY_NAMES)}")
    return name


def _size(text: str) -> int:
    size = int(text.replace("_", ""))
    if size < 1:
        raise ValueError(f"a size must be at least 1, got {text!r}")
    return size


def add_bench_parser(commands: Any) -> None:
    """Add ``bench`` and its ``hitratio`` subcommand to the ``shoal`` subcommands.

    Args:
        commands: the object ``ArgumentParser.add_subparsers()`` returned.
    """
    bench = commands.add_parser(
        "bench",
        help="measure shoal's parts (hit ratios of eviction policies)",
        description="Measure shoal's parts.",
    )
    tools = bench.add_subparsers(dest="bench_command", metavar="TOOL", parser_class=type(bench))
    tools.required = True
    hitratio = tools.add_parser(
        "hitratio",
        help="replay a cache trace through eviction policies; print hit ratios",
        description="Replay a cache access trace through eviction policies at several "
        "cache sizes (in entries; every request costs 1, a miss admits the key) and "
        "print the hit ratios (%%) as a table.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="formats: "
        + ", ".join(TRACE_FORMATS)
        + " (gzip, xz, bzip2 and zstd files are read as they are)\n"
        "example:\n"
        "  shoal bench hitratio --trace gli.trace.gz --format lirs \\\n"
        "      --policy lru,arc,tinylfu --size 250,500,1000 --plot gli.png",
    )
    hitratio.add_argument("--trace", metavar="FILE", required=True, help="the trace file")
    hitratio.add_argument(
        "--format", metavar="FORMAT", required=True, choices=TRACE_FORMATS, help="trace format"
    )
    hitratio.add_argument(
        "--policy",
        metavar="NAME,...",
        type=_csv(_policy_name, "--policy"),
        default=list(POLICY_NAMES),
        help=f"policies to compare (default: all of {','.join(POLICY_NAMES)})",
    )
    hitratio.add_argument(
        "--size",
        metavar="N,...",
        type=_csv(_size, "--size"),
        required=True,
        help="cache sizes in entries",
    )
    hitratio.add_argument("--plot", metavar="PNG", help="also draw the ratios (needs shoal[plot])")
    hitratio.add_argument(
        "--limit", metavar="N", type=_size, help="replay only the first N requests"
    )
    hitratio.add_argument(
        "--jobs",
        metavar="N",
        type=_size,
        default=1,
        help="replay in N processes (default 1)",
    )
    hitratio.add_argument(
        "--seed", metavar="N", type=int, default=0, help="seed of W-TinyLFU's randomness"
    )
    hitratio.set_defaults(handler=_cmd_hitratio)


def _cmd_hitratio(args: argparse.Namespace) -> int:
    try:
        start = time.perf_counter()
        keys = load_keys(args.trace, args.format, args.limit)
        if not keys:
            raise TraceError(f"{args.trace}: no requests")
        loaded = time.perf_counter() - start
        sizes = sorted(set(args.size))
        policies = list(dict.fromkeys(args.policy))
        results = hit_ratios(keys, policies, sizes, seed=args.seed, jobs=args.jobs)
        print(
            f"{os.path.basename(args.trace)}: {len(keys):,} requests, "
            f"{len(set(keys)):,} distinct keys (read in {loaded:.1f} s); "
            "hit ratio % by cache size in entries\n"
        )
        print(format_table(results, sizes))
        elapsed = sum(r.seconds for r in results)
        per_request = 1e9 * elapsed / (len(keys) * len(results))
        print(f"\nreplayed in {elapsed:.1f} s ({per_request:.0f} ns per request)")
        if args.plot:
            plot(results, args.plot, os.path.basename(args.trace))
            print(f"plot: {args.plot}")
    except (OSError, TraceError, MissingExtra) as exc:
        print(f"shoal bench hitratio: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
