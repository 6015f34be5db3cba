"""A cluster of three real ``shoal serve`` processes, shared by the tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.processes import CountedCluster, LoadLog, shoal_cluster

LOAD_DELAY = 0.2
"""Seconds each load takes: long enough that concurrent requests overlap the load."""


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CountedCluster]:
    """Three nodes serving group ``data`` through ``helpers.loadlog:load``, with
    ``--hot-admission always``; the tests of a module use distinct keys."""
    loads = LoadLog(tmp_path_factory.mktemp("loads") / "calls")
    with shoal_cluster(
        3,
        "--group",
        "data=helpers.loadlog:load",
        "--hot-admission",
        "always",
        env=loads.env(LOAD_DELAY),
    ) as cluster:
        yield CountedCluster(cluster, loads)
