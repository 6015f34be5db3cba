"""ShoalCache passes Django's own cache tests against a live shoal cluster.

Django's ``tests/cache/tests.py`` (from the sdist of the installed Django) runs
its ``BaseCacheTests`` against the backend and two ``shoal serve`` processes
that serve the group ``django`` without a loader, with the backend's near cache
off and on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.django_sdist import django_cache_tests
from helpers.processes import ShoalCluster, clean_env, shoal_cluster

pytest.importorskip("django")

SUITE = Path(__file__).with_name("django_cache_suite.py")


@pytest.fixture(scope="module")
def cluster() -> Iterator[ShoalCluster]:
    with shoal_cluster(2, "--group", "django") as nodes:
        yield nodes


@pytest.mark.parametrize("near", ["", "near"], ids=["without-near-cache", "with-near-cache"])
def test_django_base_cache_tests(cluster: ShoalCluster, tmp_path: Path, near: str) -> None:
    from contrib.django_cache_suite import expected_skips

    tests_dir = django_cache_tests()
    location = ",".join(node.url for node in cluster.nodes)
    result_path = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(SUITE), str(tests_dir), location, str(result_path), near],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(result_path.read_text())
    problems = result["failures"] + result["errors"]
    assert not problems, "\n\n".join(problems)
    assert result["skipped"] == expected_skips()
    assert result["run"] == 54
