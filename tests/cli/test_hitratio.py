"""``shoal bench hitratio``: the command line of the trace replay tool."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import pytest

from helpers.traces import trace
from shoal.cli.hitratio import Result, format_table, hit_ratios, plot
from shoal.cli.main import main
from shoal.errors import MissingExtra


def lirs_file(tmp_path: Path, keys: list[int]) -> Path:
    path = tmp_path / "t.trace.gz"
    path.write_bytes(gzip.compress("".join(f"{k}\n" for k in keys).encode()))
    return path


def test_prints_a_table_per_policy_and_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A small loop: LRU misses every request at 3 entries, hits all but the first pass at 4."""
    path = lirs_file(tmp_path, [1, 2, 3, 4] * 10)
    args = ["bench", "hitratio", "--trace", str(path), "--format", "lirs"]
    code = main([*args, "--policy", "lru,fifo", "--size", "4,3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "40 requests, 4 distinct keys" in out
    lines = [line for line in out.splitlines() if line.startswith("|")]
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == ["policy", "3", "4"]
    assert [c.strip() for c in lines[2].split("|")[1:-1]] == ["LRU", "0.00", "90.00"]
    assert [c.strip() for c in lines[3].split("|")[1:-1]] == ["FIFO", "0.00", "90.00"]


def test_all_policies_by_default_and_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --policy every policy runs; --jobs 2 gives the same figures as one process."""
    path = lirs_file(tmp_path, [i % 7 for i in range(300)] + list(range(100, 160)))
    args = ["bench", "hitratio", "--trace", str(path), "--format", "lirs", "--size", "5,8"]
    assert main(args) == 0
    one = capsys.readouterr().out
    assert main([*args, "--jobs", "2"]) == 0
    two = capsys.readouterr().out
    table = [line for line in one.splitlines() if line.startswith("|")]
    assert [line.split("|")[1].strip() for line in table[2:]] == [
        "LRU",
        "LFU (aging)",
        "FIFO",
        "ARC",
        "W-TinyLFU",
    ]
    assert table == [line for line in two.splitlines() if line.startswith("|")]


def test_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--plot draws the ratios into a PNG file."""
    path = lirs_file(tmp_path, [i % 9 for i in range(200)])
    png = tmp_path / "out.png"
    args = ["bench", "hitratio", "--trace", str(path), "--format", "lirs", "--size", "4,8,10"]
    code = main([*args, "--policy", "lru,arc", "--plot", str(png)])
    assert code == 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert f"plot: {png}" in capsys.readouterr().out


def test_plot_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without matplotlib the error names the plot extra."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtra, match=r"shoal\[plot\]"):
        plot([Result("lru", 1, 1, 1, 0.0)], "x.png", "t")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "0"], "at least 1"),
        (["--size", "10", "--policy", "lru,mru"], "unknown policy"),
        (["--size", "10", "--format", "csv"], "invalid choice"),
    ],
)
def test_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """Bad sizes, policies and formats are usage errors (exit 2)."""
    path = lirs_file(tmp_path, [1, 2])
    base = ["bench", "hitratio", "--trace", str(path)]
    if "--format" not in args:
        base += ["--format", "lirs"]
    with pytest.raises(SystemExit) as exc:
        main(base + args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_runtime_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file or a file in another format fails with exit 1 and one line."""
    assert (
        main(
            [
                "bench",
                "hitratio",
                "--trace",
                str(tmp_path / "nope"),
                "--format",
                "lirs",
                "--size",
                "3",
            ]
        )
        == 1
    )
    assert "No such file" in capsys.readouterr().err
    path = tmp_path / "arc.txt"
    path.write_bytes(b"1 2 0 1\n")
    assert main(["bench", "hitratio", "--trace", str(path), "--format", "lirs", "--size", "3"]) == 1
    assert "not a lirs record" in capsys.readouterr().err


def test_format_table_rows_and_columns() -> None:
    """One row per policy in the order given, one column per size."""
    results = [
        Result("arc", 10, 100, 25, 0.0),
        Result("arc", 20, 100, 50, 0.0),
        Result("lru", 10, 100, 5, 0.0),
        Result("lru", 20, 100, 7, 0.0),
    ]
    lines = format_table(results, [10, 20]).splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == ["policy", "10", "20"]
    assert [c.strip() for c in lines[2].split("|")[1:-1]] == ["ARC", "25.00", "50.00"]
    assert [c.strip() for c in lines[3].split("|")[1:-1]] == ["LRU", "5.00", "7.00"]


def test_replays_a_real_trace() -> None:
    """The gli trace through LRU at 1,000 entries: the published 11.21%."""
    from shoal.cli.hitratio import load_keys

    keys = load_keys(trace("lirs/gli.trace.gz"), "lirs", limit=None)
    (result,) = hit_ratios(keys, ["lru"], [1000])
    assert (result.requests, f"{result.ratio:.2f}") == (6015, "11.21")
