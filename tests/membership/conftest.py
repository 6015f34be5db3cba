"""Fixtures for the membership tests: a real etcd server on free ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.cluster_views import missing
from shoal.cli.localetcd import LocalEtcd, etcd_binary


@pytest.fixture(scope="module")
def etcd() -> Iterator[LocalEtcd]:
    """An etcd server on free loopback ports with a temporary data dir, for one module.

    A test may kill it; the fixture starts it again afterwards for the next test.
    Skipped when etcd is not installed (Debian ``etcd-server``), failed under ``CI=true``.
    """
    if etcd_binary() is None:
        missing("etcd is not installed (Debian: apt-get install etcd-server)")
    with LocalEtcd() as server:
        yield server


@pytest.fixture
def live_etcd(etcd: LocalEtcd) -> Iterator[LocalEtcd]:
    """The module's etcd, running at the start of the test and again after it."""
    etcd.start()
    try:
        yield etcd
    finally:
        etcd.start()
