"""bench/policy_reference.py on a small slice: the table's invariants, not its numbers.

The full grid is a benchmark (minutes); this replays a few small traces, or the
first requests of bigger ones, through every policy and theine, and checks what
must hold whatever the figures: LRU and ARC reproduce their published lirs/gli
rows exactly, LRU never loses hits in a bigger cache (its inclusion property),
no policy beats the compulsory misses, theine ran as often as asked and held no
more than its capacity, the best-of column is the best of its three, and the
summary names the worst cells.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType
from typing import Any

import pytest

from helpers.bench_modules import bench_module
from helpers.traces import TRACES, trace

RUNS = 2


def reference() -> ModuleType:
    """bench/policy_reference.py, imported as a module."""
    return bench_module("policy_reference")


# (name, max requests): small traces whole, a bigger one cut.
SLICE = (("lirs/gli", None), ("lirs/cpp", None), ("cache2k/web07", 20_000))


@cache
def measured(name: str, max_requests: int | None) -> tuple[Any, list[Any]]:
    ref = reference()
    relative, fmt = {n: (r, f) for n, r, f in ref.TRACES}[name]
    loaded = ref.load(name, trace(relative), fmt, max_requests)
    sizes = ref.grid(loaded.distinct, ref.DEFAULT_PERCENTS)
    return loaded, ref.measure(loaded, sizes, theine_runs=RUNS)


def test_every_shared_trace_file_has_a_reader() -> None:
    """The grid covers every trace file of the shared directory, each in a known format."""
    from shoal.cli.traces import TRACE_FORMATS

    ref = reference()
    if not TRACES.is_dir():
        pytest.skip(f"no traces under {TRACES}")
    notes = ("README.md", "README.upstream.md", "LICENSE.txt")
    files = {
        str(p.relative_to(TRACES)) for p in TRACES.rglob("*") if p.is_file() and p.name not in notes
    }
    assert files == {relative for _, relative, _ in ref.TRACES}
    assert {fmt for _, _, fmt in ref.TRACES} == set(TRACE_FORMATS)


def test_lru_and_arc_reproduce_their_published_gli_rows() -> None:
    """The script's own check passes: LRU and ARC on lirs/gli, to two decimals."""
    ref = reference()
    loaded, _ = measured("lirs/gli", None)
    rows = ref.published_check(loaded, 1)
    assert [row[0] for row in rows] == ["LRU", "ARC"]
    assert all(row[-1] == "exact" for row in rows)


def test_the_grid_spans_one_to_fifty_percent_of_the_keys() -> None:
    ref = reference()
    sizes = ref.grid(2529, ref.DEFAULT_PERCENTS)
    assert len(sizes) >= 4
    assert sizes[0] == round(0.01 * 2529)
    assert sizes[-1] == round(0.5 * 2529)
    assert ref.grid(50, ref.DEFAULT_PERCENTS)[0] == 1  # never below one entry


def test_a_cut_trace_says_so() -> None:
    loaded, _ = measured("cache2k/web07", 20_000)
    assert loaded.cut
    assert len(loaded.keys) == 20_000
    whole, _ = measured("lirs/gli", None)
    assert not whole.cut
    assert len(whole.keys) == 6015


@pytest.mark.parametrize(("name", "max_requests"), SLICE)
def test_cells_hold_the_invariants(name: str, max_requests: int | None) -> None:
    loaded, cells = measured(name, max_requests)
    requests = len(loaded.keys)
    ceiling = 100.0 * (requests - loaded.distinct) / requests  # compulsory misses
    assert [c.size for c in cells] == sorted(c.size for c in cells)
    lru = [c.ratios["lru"] for c in cells]
    assert lru == sorted(lru), "LRU lost hits in a bigger cache"
    for cell in cells:
        assert set(cell.ratios) == {"lru", "lfu", "fifo", "arc", "tinylfu"}
        assert len(cell.theine) == RUNS
        for ratio in [*cell.ratios.values(), *cell.theine]:
            assert 0.0 <= ratio <= ceiling + 1e-9
        label, best = cell.best
        assert best == max(cell.ratios["lru"], cell.ratios["arc"], cell.theine_max)
        assert label in ("LRU", "ARC", "theine")
        assert cell.vs_best <= cell.vs_theine + 1e-9
        assert cell.vs_theine == pytest.approx(cell.ratios["tinylfu"] - min(cell.theine))


def test_summary_names_the_worst_cells() -> None:
    ref = reference()
    cells = [c for name, limit in SLICE for c in measured(name, limit)[1]]
    rows = ref.summary(cells)
    worst_theine = min(cells, key=lambda c: c.vs_theine)
    worst_best = min(cells, key=lambda c: c.vs_best)
    assert (
        f"{worst_theine.trace} @ {worst_theine.size:,}: {worst_theine.vs_theine:+.2f}" in rows[0][2]
    )
    assert f"{worst_best.trace} @ {worst_best.size:,}: {worst_best.vs_best:+.2f}" in rows[1][2]
    met = sum(c.vs_best >= -ref.BEST_OF_MARGIN for c in cells)
    assert rows[1][1] == f"{met}/{len(cells)} cells"


def test_the_script_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    """The command line on one small trace: the table, the summary and the published check."""
    ref = reference()
    trace("lirs/gli.trace.gz")
    assert ref.main(["--traces", "lirs/gli", "--theine-runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "| lirs/gli" in out
    assert "W-TinyLFU - best" in out
    assert out.count("exact") == 2
    assert "--max-requests): none" in out


def test_unknown_traces_are_refused() -> None:
    ref = reference()
    with pytest.raises(ref.BenchError, match="unknown traces"):
        ref.select(["lirs/nope"])
