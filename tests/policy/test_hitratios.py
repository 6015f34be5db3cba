"""Hit ratios on real traces against published figures (the small traces only).

LRU is deterministic, so matching the published LRU ratios to two decimals
proves the trace readers; ARC and W-TinyLFU are held to the targets of the
hit-ratio tables in docs/eviction.md.
"""

from __future__ import annotations

from functools import cache

import pytest

from helpers.traces import trace
from shoal.cli.hitratio import hit_ratios, load_keys

GLI_SIZES = (250, 500, 750, 1000, 1250, 1500, 1750, 2000)
# Published hit ratios (%) on lirs/gli (Caffeine simulator; see shared/traces/README.md).
GLI = {
    "lru": (0.91, 0.95, 1.15, 11.21, 21.25, 36.56, 45.04, 57.41),
    "arc": (1.38, 1.38, 1.41, 21.30, 34.43, 50.44, 55.06, 57.41),
    "tinylfu": (15.15, 33.08, 43.11, 50.57, 51.87, 53.57, 55.61, 57.96),
}
# Reference figures (trace, format, size): (LRU, W-TinyLFU).
REFERENCE = {
    ("lirs/loop.trace.gz", "lirs", 512): (0.00, 50.00),
    ("lirs/multi2.trace.gz", "lirs", 256): (24.54, 37.21),
    ("lirs/multi2.trace.gz", "lirs", 512): (36.37, 47.64),
    ("lirs/sprite.trace.gz", "lirs", 256): (49.90, 55.60),
    ("lirs/2_pools.trace.gz", "lirs", 128): (26.86, 49.77),
    ("cache2k/web07.trace.xz", "cache2k", 1000): (50.41, 49.45),
}


@cache
def keys(relative: str, fmt: str) -> list[str]:
    return load_keys(trace(relative), fmt)


@cache
def theine_ratios(relative: str, fmt: str, size: int, seeds: int = 3) -> tuple[float, ...]:
    """theine's core replayed over the trace, once per hash seed (see bench/policy_reference.py)."""
    from theine_core import TlfuCore, spread
    from xxhash import xxh3_64_intdigest

    trace_keys = keys(relative, fmt)
    runs = []
    for seed in range(seeds):
        hashes = {k: spread(xxh3_64_intdigest(k.encode(), seed) >> 1) for k in set(trace_keys)}
        core, held, hits = TlfuCore(size), set(), 0
        for key in trace_keys:
            h = hashes[key]
            if h in held:
                hits += 1
                core.access([h])
            else:
                held.add(h)
                held.difference_update(core.set([(h, 0)]))
        runs.append(100.0 * hits / len(trace_keys))
    return tuple(runs)


@cache
def ratios(relative: str, fmt: str, policy: str, sizes: tuple[int, ...]) -> tuple[float, ...]:
    return tuple(r.ratio for r in hit_ratios(keys(relative, fmt), [policy], sizes))


def test_lru_reproduces_the_published_gli_row() -> None:
    """LRU on lirs/gli matches the published row to two decimals at every size."""
    got = ratios("lirs/gli.trace.gz", "lirs", "lru", GLI_SIZES)
    assert [f"{r:.2f}" for r in got] == [f"{r:.2f}" for r in GLI["lru"]]


@pytest.mark.parametrize(("relative", "fmt", "size"), sorted(REFERENCE))
def test_lru_reproduces_the_reference_figures(relative: str, fmt: str, size: int) -> None:
    """LRU matches the reference LRU column exactly: the lirs and cache2k readers are right."""
    (got,) = ratios(relative, fmt, "lru", (size,))
    assert f"{got:.2f}" == f"{REFERENCE[relative, fmt, size][0]:.2f}"


def test_arc_within_half_a_point_of_the_published_gli_row() -> None:
    """ARC on lirs/gli is within 0.5 point of the published ARC row at every size."""
    got = ratios("lirs/gli.trace.gz", "lirs", "arc", GLI_SIZES)
    for size, mine, published in zip(GLI_SIZES, got, GLI["arc"], strict=True):
        assert abs(mine - published) <= 0.5, (size, mine, published)


def test_tinylfu_at_least_the_published_gli_row() -> None:
    """W-TinyLFU on lirs/gli is at least the published W-TinyLFU row minus 1 point.

    The published row is one run of Caffeine's simulator: W-TinyLFU's figure depends on
    the sketch's hash (theine, the same algorithm, spans 41.43 to 43.61 at 750 entries
    over five hash seeds), so one run is held to a point, and to theine below.
    """
    got = ratios("lirs/gli.trace.gz", "lirs", "tinylfu", GLI_SIZES)
    for size, mine, published in zip(GLI_SIZES, got, GLI["tinylfu"], strict=True):
        assert mine >= published - 1.0, (size, mine, published)


def test_tinylfu_at_least_theine_on_gli() -> None:
    """W-TinyLFU on lirs/gli is at least theine's lowest of three hash seeds minus 0.3."""
    got = ratios("lirs/gli.trace.gz", "lirs", "tinylfu", GLI_SIZES)
    for size, mine in zip(GLI_SIZES, got, strict=True):
        runs = theine_ratios("lirs/gli.trace.gz", "lirs", size)
        assert mine >= min(runs) - 0.3, (size, mine, runs)


@pytest.mark.parametrize(("relative", "fmt", "size"), sorted(REFERENCE))
def test_tinylfu_at_least_the_reference_figures(relative: str, fmt: str, size: int) -> None:
    """W-TinyLFU reaches theine's W-TinyLFU (the lowest of three hash seeds, measured
    here: the reference column is one run) minus 1 point, and is never more than 2
    points below LRU (the recency-biased web07 is where that can happen)."""
    lru, _ = REFERENCE[relative, fmt, size]
    (got,) = ratios(relative, fmt, "tinylfu", (size,))
    reference = min(theine_ratios(relative, fmt, size))
    assert got >= reference - 1.0, (got, reference)
    assert got >= lru - 2.0, (got, lru)
