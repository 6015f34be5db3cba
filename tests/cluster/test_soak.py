"""bench/soak.py for a few seconds: three real ``shoal serve`` nodes under the mixed
load, with a restart, sampled; and the slope it reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from helpers.bench_modules import BENCH, bench_module


def soak() -> ModuleType:
    """bench/soak.py, imported as a module."""
    return bench_module("soak")


def test_slope_is_least_squares_and_a_restarted_node_counts_its_lives_ends() -> None:
    s = soak()
    assert s.slope([(0, 10.0), (1, 12.0), (2, 14.0)]) == pytest.approx(2.0)
    assert s.slope([(0, 10.0), (1, 9.0), (2, 11.0), (3, 10.0)]) == pytest.approx(0.2)
    assert s.slope([(1, 5.0)]) == 0.0
    sample = s.Sample
    lives = [
        sample(0.0, 2, 100, 40.0, 30),
        sample(0.5, 2, 100, 44.0, 31),
        sample(1.0, 2, 200, 41.0, 30),
        sample(1.5, 2, 200, 45.0, 31),
    ]
    assert s._points(lives) == [(0.5, 44.0), (1.5, 45.0)]
    assert s._points(lives[:2]) == [(0.0, 40.0), (0.5, 44.0)]


def test_a_short_soak_restarts_a_node_samples_every_node_and_loses_no_read(
    tmp_path: Path,
) -> None:
    out = tmp_path / "soak.json"
    args = [
        *("--minutes", "0.3", "--sample", "1", "--restart-every", "7", "--drain", "0.5"),
        *("--json", str(out)),
    ]
    done = subprocess.run(
        [sys.executable, str(BENCH / "soak.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.exists(), done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["restarts"] >= 1, done.stdout
    assert all(report["requests"][kind] > 0 for kind in soak().KINDS), report["requests"]
    # Reads never fail: a key whose owner is restarting is loaded locally.
    for kind in ("hit", "miss", "notfound"):
        assert report["failures"][kind] == 0, report["failure_examples"]
    assert report["tracebacks"] == 0, done.stdout
    for index, node in enumerate(report["nodes"]):
        assert node["samples"] >= 2, index
        assert 10 < node["rss_first_mib"] < 500
        assert 5 < node["fds_first"] < 1000
    pids = {s["pid"] for s in report["samples"] if s["node"] == 2}
    assert len(pids) >= 2  # the third node ran as a new process after its restart
    assert done.returncode == (1 if sum(report["failures"].values()) else 0)
